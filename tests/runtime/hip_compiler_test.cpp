// The hiprtc compiler (runtime/hip/hiprtc_compiler.hpp) for real: every AMD family's default
// compiled for gfx90a, gfx908 and gfx1030 into a non-empty code object; the refusal of what hiprtc
// 5.2 aborts on (asked of the compiler, the service and the CLI, never of hiprtc itself); the
// store key's HIP version; a warm start from the store. Needs libamdhip64 (Debian:
// libamdhip64-dev), not a GPU; skips with the reason when it cannot be opened.
#include <gtest/gtest.h>

#include "kernel_sources/family.hpp"
#include "runtime/compile_key.hpp"
#include "runtime/kernel_service.hpp"
#include "tests/runtime/runtime_test_support.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

// Binds `var` to hiprtc, or skips the test with the reason it cannot be opened.
#define Q4JIT_REQUIRE_HIPRTC(var)                                                  \
  auto var##_opened = ::q4jit::open_compiler(::q4jit::Platform::hip);              \
  if (!var##_opened) GTEST_SKIP() << "no hiprtc: " << var##_opened.error().what(); \
  const ::q4jit::Compiler& var = *var##_opened.value()

CompileTarget amd(const std::string& gfx) {
  CompileTarget target;
  target.gfx = gfx;
  return target;
}

CompileRequest default_request(const std::string& family_name, const CompileTarget& target) {
  const KernelFamily family = find_kernel_family(family_name);
  return make_request(family, family.default_variants.front(), target);
}

// A code object is an ELF for amdgcn; q4jit stores it as hipModuleLoadData takes it.
bool is_elf(const std::string& binary) {
  return binary.size() > 4 && binary.compare(0, 4,
                                             "\x7f"
                                             "ELF") == 0;
}

TEST(Hiprtc, DescribesItselfWithTheHipVersion) {
  Q4JIT_REQUIRE_HIPRTC(compiler);
  EXPECT_EQ(compiler.platform(), "hip");
  EXPECT_TRUE(compiler.description().starts_with("hiprtc (HIP ")) << compiler.description();
  EXPECT_TRUE(compiler.version_tag().starts_with("hip")) << compiler.version_tag();
  EXPECT_TRUE(compiler.headers_version().starts_with("HIP_VERSION ")) << compiler.headers_version();
}

class HiprtcDefaults : public testing::TestWithParam<const char*> {};

TEST_P(HiprtcDefaults, EveryAmdFamilyCompiles) {
  Q4JIT_REQUIRE_HIPRTC(compiler);
  KernelService service(compiler, nullptr, KernelServiceOptions{});
  std::vector<CompileRequest> requests;
  for (const KernelFamily& family : kernel_families()) {
    if (!family.amd) continue;
    for (const KernelVariant& variant : family.default_variants) {
      requests.push_back(make_request(family, variant, amd(GetParam())));
    }
  }
  ASSERT_GE(requests.size(), 9u) << "expected every SIMT family";
  const auto results = service.get_all(requests, 2);
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string what = requests[i].family + "." + requests[i].config;
    ASSERT_TRUE(results[i].ok()) << what << ": " << results[i].error().describe();
    const CompiledKernel& kernel = results[i].value();
    EXPECT_TRUE(is_elf(kernel.binary)) << what << ": " << kernel.binary.size() << " bytes";
    ASSERT_EQ(kernel.lowered_names.size(), requests[i].name_expressions.size()) << what;
    for (const auto& [expression, lowered] : kernel.lowered_names) {
      EXPECT_FALSE(lowered.empty()) << what << ": " << expression;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CiArchitectures, HiprtcDefaults,
                         testing::Values("gfx90a", "gfx908", "gfx1030"));

// The families declared NVIDIA-only really are: each fails to compile (an error, not a crash).
TEST(Hiprtc, FamiliesNotDeclaredAmdDoNotCompile) {
  Q4JIT_REQUIRE_HIPRTC(compiler);
  int checked = 0;
  for (const KernelFamily& family : kernel_families()) {
    if (family.amd) continue;
    const auto result =
        compiler.compile(make_request(family, family.default_variants.front(), amd("gfx90a")));
    EXPECT_FALSE(result.ok()) << family.name << " compiles for gfx90a but is declared NVIDIA-only";
    ++checked;
  }
  EXPECT_GE(checked, 2) << "q4_mma and gemm_f16 are NVIDIA-only";
}

// hiprtc 5.2 aborts the process on these: the request must be refused before it reaches hiprtc
// (were it not, this test would crash the suite).
TEST(Hiprtc, RefusesArchitecturesItWouldAbortOn) {
  Q4JIT_REQUIRE_HIPRTC(compiler);
  if (!compiler.version_tag().starts_with("hip5")) {
    GTEST_SKIP() << compiler.description() << " compiles for them";
  }
  KernelService service(compiler, nullptr, KernelServiceOptions{});
  for (const std::string name : {"gfx1100", "gfx940", "gfx942"}) {
    const CompileRequest request = default_request("rms_norm", amd(name));
    for (const auto& result : {compiler.compile(request), service.get(request)}) {
      ASSERT_FALSE(result.ok()) << name;
      const std::string message = result.error().what();
      EXPECT_TRUE(message.starts_with(name + ": ")) << message;
      EXPECT_NE(message.find("cannot compile for it"), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }
  EXPECT_EQ(service.counters().compiles, 0);
}

TEST(Hiprtc, RefusesNvidiaTargets) {
  Q4JIT_REQUIRE_HIPRTC(compiler);
  const auto result = compiler.compile(default_request("rms_norm", {90, false}));
  ASSERT_FALSE(result.ok());
  EXPECT_NE(std::string(result.error().what()).find("not NVIDIA"), std::string::npos)
      << result.error().what();
}

// hiprtc under another HIP version: the real compiler with only its identity changed, standing
// for the upgrade this machine cannot install.
class OtherHipVersion final : public Compiler {
 public:
  explicit OtherHipVersion(const Compiler& real) : real_(real) {}
  std::string platform() const override { return real_.platform(); }
  std::string description() const override { return "hiprtc (HIP 6.2.41133)"; }
  std::string version_tag() const override { return "hip6-2"; }
  std::vector<int> supported_archs() const override { return real_.supported_archs(); }
  std::string headers_version() const override { return "HIP_VERSION 60241133"; }
  std::string headers_dir() const override { return real_.headers_dir(); }
  std::vector<std::string> key_options(const CompileRequest& request) const override {
    return real_.key_options(request);
  }
  Result<CompiledKernel> compile(const CompileRequest& request) const override {
    return real_.compile(request);
  }

 private:
  const Compiler& real_;
};

TEST(HipCompileKey, DiffersFromCudaAndHoldsTheHipVersion) {
  Q4JIT_REQUIRE_HIPRTC(hiprtc);
  const CompileRequest request = default_request("rms_norm", amd("gfx90a"));
  const std::string key = compile_key(request, hiprtc);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(compile_key(default_request("rms_norm", amd("gfx90a")), hiprtc), key);
  EXPECT_NE(compile_key(default_request("rms_norm", amd("gfx1030")), hiprtc), key);
  EXPECT_NE(compile_key(request, OtherHipVersion(hiprtc)), key) << "the HIP version is not in it";

  const std::string file = store_key(request, hiprtc, key).file_name();
  EXPECT_NE(file.find(hiprtc.version_tag() + ".gfx90a"), std::string::npos) << file;

  auto nvrtc = open_compiler(Platform::cuda);
  if (!nvrtc) GTEST_SKIP() << "no NVRTC to compare with: " << nvrtc.error().what();
  const CompileRequest cuda = default_request("rms_norm", {90, false});
  EXPECT_NE(compile_key(cuda, *nvrtc.value()), key);
  EXPECT_NE(store_key(cuda, *nvrtc.value(), compile_key(cuda, *nvrtc.value())).file_name(), file);
}

TEST(HipKernelService, WarmStartReadsTheCodeObjectFromTheStore) {
  Q4JIT_REQUIRE_HIPRTC(compiler);
  test::TempDir dir;
  KernelStoreOptions options;
  options.dir = dir.path();
  const KernelStore store(options);
  const CompileRequest request = default_request("rms_norm", amd("gfx1030"));
  std::string cold_binary;
  {
    KernelService cold(compiler, &store, KernelServiceOptions{});
    const auto kernel = cold.get(request);
    ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
    EXPECT_FALSE(kernel.value().from_store);
    cold_binary = kernel.value().binary;
  }
  KernelService warm(compiler, &store, KernelServiceOptions{.assert_no_compile = true});
  const auto kernel = warm.get(request);
  ASSERT_TRUE(kernel.ok()) << kernel.error().describe();
  EXPECT_TRUE(kernel.value().from_store);
  EXPECT_EQ(kernel.value().binary, cold_binary);
  EXPECT_EQ(warm.counters().store_hits, 1);
  EXPECT_EQ(warm.counters().compiles, 0);
}

TEST(HipKernelsCommand, RefusesAnArchitectureInOneLine) {
  if (!fs::exists(test::q4jit_binary()))
    GTEST_SKIP() << "q4jit binary not found (set Q4JIT_BINARY)";
  Q4JIT_REQUIRE_HIPRTC(compiler);
  if (!compiler.version_tag().starts_with("hip5")) GTEST_SKIP() << compiler.description();
  std::string command = "'";  // built by appending: GCC 12 warns (-Wrestrict) on "'" + string
  command += test::q4jit_binary().string();
  command += "' kernels compile --no-store --arch gfx90a,gfx942";
  const auto result = test::run_shell(command);
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("gfx942: hiprtc"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find('\n'), result.output.size() - 1) << "one line, nothing compiled";
}

}  // namespace
}  // namespace q4jit
