// The kernel key a tune records for a winner is the key a warm load requests: recorded through a
// KernelService with a store (after the tuner's batched compile, as in a tune), then loaded by a
// service that may not compile. Needs NVRTC, not a GPU (only timing needs one).
#include <gtest/gtest.h>

#include "runtime/kernel_service.hpp"
#include "tests/runtime/runtime_test_support.hpp"
#include "tests/support/test_support.hpp"
#include "tuner/q4_matmul_runner.hpp"
#include "tuner/q4_matmul_tuning.hpp"

namespace q4jit {
namespace {

TEST(WinnerKey, RecordedKeyLoadsWithoutCompiling) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  test::TempDir dir;
  KernelStoreOptions store_options;
  store_options.dir = dir / "kernels";
  const KernelStore store(store_options);
  const CompileTarget target{90, false};
  const Q4MatmulConfig winner =
      q4_matmul_configs_by_name().at("bt128.cpt4.lw128.ks256.mb1.xs.f32.at");
  const Q4MatmulConfig other =
      q4_matmul_configs_by_name().at("bt256.cpt2.lw64.ks512.mb1.xs.f32.at");

  KernelService cold(compiler, &store, KernelServiceOptions{});
  // The tune compiles candidates in batches first; the winner's key must not be the batch's.
  const std::vector<CompileRequest> batch = q4_matmul_requests({other, winner}, target, 4);
  ASSERT_EQ(batch.size(), 1u);
  const Result<CompiledKernel> batched = cold.get(batch.front());
  ASSERT_TRUE(batched.ok()) << batched.error().describe();
  const Result<std::string> key = record_winner_kernel(cold, winner, target);
  ASSERT_TRUE(key.ok()) << key.error().describe();
  EXPECT_FALSE(key.value().empty());
  EXPECT_NE(key.value(), batched.value().key);
  EXPECT_EQ(cold.counters().compiles, 2);

  KernelService warm(compiler, &store, KernelServiceOptions{.assert_no_compile = true});
  const Result<CompiledKernel> loaded = warm.get(q4_matmul_winner_request(winner, target));
  ASSERT_TRUE(loaded.ok()) << loaded.error().describe();
  EXPECT_TRUE(loaded.value().from_store);
  EXPECT_EQ(loaded.value().key, key.value());
  EXPECT_EQ(loaded.value().lowered_name(name_expression(winner)).substr(0, 2), "_Z");
  EXPECT_EQ(warm.counters().compiles, 0);
  // Recording again on the warm service is a store hit with the same key.
  const Result<std::string> again = record_winner_kernel(warm, winner, target);
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(again.value(), key.value());
  // A winner never recorded is a compile, which the no-compile service refuses.
  EXPECT_FALSE(record_winner_kernel(warm, other, target).ok());
}

}  // namespace
}  // namespace q4jit
