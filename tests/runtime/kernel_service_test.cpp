// The compiler service (runtime/kernel_service.hpp) with a real store: counters across a cold and
// a warm start, Q4JIT_ASSERT_NO_COMPILE, recovery from a corrupted entry, and two processes
// filling one store at once. Needs NVRTC, not a GPU.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel_sources/family.hpp"
#include "runtime/compile_key.hpp"
#include "runtime/kernel_service.hpp"
#include "tests/runtime/runtime_test_support.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

CompileRequest rms_norm_request(int sm) {
  const KernelFamily family = find_kernel_family("rms_norm");
  return make_request(family, family.default_variants.front(), {sm, false});
}

KernelStoreOptions quiet_store(const fs::path& dir, std::vector<std::string>* warnings) {
  KernelStoreOptions options;
  options.dir = dir;
  options.warn = [warnings](const std::string& line) { warnings->push_back(line); };
  return options;
}

TEST(KernelService, WarmStartCompilesNothing) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  test::TempDir dir;
  std::vector<std::string> warnings;
  const KernelStore store(quiet_store(dir.path(), &warnings));
  std::string cold_binary;
  {
    KernelService cold(compiler, &store, KernelServiceOptions{});
    const auto kernel = cold.get(rms_norm_request(90));
    ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
    EXPECT_FALSE(kernel.value().from_store);
    cold_binary = kernel.value().binary;
    EXPECT_EQ(cold.counters().compiles, 1);
    EXPECT_EQ(cold.counters().store_misses, 1);
    EXPECT_EQ(cold.counters().store_hits, 0);
  }
  KernelService warm(compiler, &store, KernelServiceOptions{.assert_no_compile = true});
  const auto kernel = warm.get(rms_norm_request(90));
  ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
  EXPECT_TRUE(kernel.value().from_store);
  EXPECT_EQ(kernel.value().binary, cold_binary);
  EXPECT_EQ(kernel.value().lowered_name("rms_norm_kernel<256, 8, false>").substr(0, 2), "_Z");
  EXPECT_EQ(warm.counters().compiles, 0);
  EXPECT_EQ(warm.counters().store_hits, 1);
  EXPECT_TRUE(warnings.empty());
}

TEST(KernelService, AssertNoCompileTurnsACompileIntoAnError) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  test::TempDir dir;
  std::vector<std::string> warnings;
  const KernelStore store(quiet_store(dir.path(), &warnings));
  test::ScopedEnv env("Q4JIT_ASSERT_NO_COMPILE", "1");
  KernelService service(compiler, &store);  // options from the environment
  const auto kernel = service.get(rms_norm_request(80));
  ASSERT_FALSE(kernel.ok());
  EXPECT_NE(std::string(kernel.error().what()).find("Q4JIT_ASSERT_NO_COMPILE"), std::string::npos);
  EXPECT_EQ(service.counters().compiles, 0);
  EXPECT_EQ(service.counters().failures, 1);
}

TEST(KernelService, CorruptedEntryIsRecompiled) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  test::TempDir dir;
  std::vector<std::string> warnings;
  const KernelStore store(quiet_store(dir.path(), &warnings));
  const CompileRequest request = rms_norm_request(86);
  {
    KernelService first(compiler, &store, KernelServiceOptions{});
    ASSERT_TRUE(first.get(request).ok());
  }
  const fs::path path =
      dir.path() / store_key(request, compiler, compile_key(request, compiler)).file_name();
  std::string bytes = test::read_bytes(path);
  ASSERT_GT(bytes.size(), 1000u);
  bytes[bytes.size() / 2] ^= 0x5a;
  test::write_bytes(path, bytes);

  KernelService second(compiler, &store, KernelServiceOptions{});
  const auto kernel = second.get(request);
  ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
  EXPECT_FALSE(kernel.value().from_store);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("checksum"), std::string::npos) << warnings[0];
  EXPECT_EQ(second.counters().compiles, 1);
  EXPECT_EQ(second.counters().store_misses, 1);
  // The recompiled entry replaced the corrupt one.
  EXPECT_NO_THROW(parse_stored_kernel(test::read_bytes(path), path.string()));
}

// Two processes compile the same kernels into one store at the same time (fork, before either
// opens a GPU: NVRTC only). Afterwards a third service finds every kernel, compiling nothing.
TEST(KernelService, TwoProcessesFillingOneStore) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  test::TempDir dir;
  std::vector<CompileRequest> requests;
  for (int sm : {75, 80, 86, 89, 90}) requests.push_back(rms_norm_request(sm));
  pid_t children[2];
  for (pid_t& child : children) {
    child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int status = 0;
      try {
        KernelStoreOptions options;
        options.dir = dir.path();
        const KernelStore store(options);
        KernelService service(compiler, &store, KernelServiceOptions{});
        for (const auto& result : service.get_all(requests, 1)) status |= result.ok() ? 0 : 1;
      } catch (...) {
        status = 2;
      }
      ::_exit(status);
    }
  }
  for (pid_t child : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  std::vector<std::string> warnings;
  const KernelStore store(quiet_store(dir.path(), &warnings));
  EXPECT_EQ(store.stats().entries, static_cast<int64_t>(requests.size()));
  EXPECT_EQ(store.stats().temporary_files, 0);
  KernelService after(compiler, &store, KernelServiceOptions{.assert_no_compile = true});
  for (const auto& result : after.get_all(requests, 2)) EXPECT_TRUE(result.ok());
  EXPECT_EQ(after.counters().store_hits, static_cast<int64_t>(requests.size()));
  EXPECT_TRUE(warnings.empty());
}

}  // namespace
}  // namespace q4jit
