// NVRTC through the Compiler interface (runtime/cuda/nvrtc_compiler.hpp) and the store key
// (runtime/compile_key.hpp). Needs NVRTC, not a GPU; skipped with the reason when NVRTC is absent.
#include <gtest/gtest.h>

#include <algorithm>

#include "kernel_sources/family.hpp"
#include "runtime/compile_key.hpp"
#include "runtime/kernel_service.hpp"
#include "tests/runtime/runtime_test_support.hpp"

namespace q4jit {
namespace {

const int kCiArchs[] = {75, 80, 86, 89, 90};

CompileRequest rms_norm_request(int sm = 90) {
  const KernelFamily family = find_kernel_family("rms_norm");
  return make_request(family, family.default_variants.front(), {sm, false});
}

std::string context_value(const Error& error, const std::string& key) {
  for (const auto& [name, value] : error.context()) {
    if (name == key) return value;
  }
  return "";
}

TEST(Compiler, DefaultsOfEveryFamilyCompileForTheCiArchitectures) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  KernelService service(compiler, nullptr, KernelServiceOptions{});
  std::vector<CompileRequest> requests;
  for (int sm : kCiArchs) {
    for (const KernelFamily& family : kernel_families()) {
      if (!family.supports(sm)) continue;  // e.g. tensor-core families below sm_80
      for (const KernelVariant& variant : family.default_variants) {
        requests.push_back(make_request(family, variant, {sm, false}));
      }
    }
  }
  const auto results = service.get_all(requests, 2);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].error().describe();
    const CompiledKernel& kernel = results[i].value();
    EXPECT_EQ(kernel.binary.substr(0, 4),
              "\x7f"
              "ELF")
        << requests[i].config;
    ASSERT_EQ(kernel.lowered_names.size(), 1u);
    EXPECT_TRUE(kernel.lowered_names[0].second.starts_with("_Z")) << kernel.lowered_names[0].second;
  }
  EXPECT_EQ(service.counters().compiles, static_cast<int64_t>(requests.size()));
  EXPECT_EQ(service.counters().failures, 0);
}

TEST(Compiler, PtxTargetGivesPtxText) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  CompileRequest request = rms_norm_request();
  request.target = {90, true};
  const auto compiled = compiler.compile(request);
  ASSERT_TRUE(compiled.ok()) << compiled.error().describe();
  EXPECT_NE(compiled.value().binary.find(".target sm_90"), std::string::npos);
}

TEST(Compiler, OptionsAreTheDocumentedOnes) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  const auto options = compiler.key_options(rms_norm_request(86));
  auto has = [&](const std::string& option) {
    return std::find(options.begin(), options.end(), option) != options.end();
  };
  EXPECT_TRUE(has("--gpu-architecture=sm_86"));
  EXPECT_TRUE(has("-default-device"));
  EXPECT_TRUE(has("--std=c++17"));
  EXPECT_TRUE(has("-lineinfo"));
  for (const std::string& option : options) {
    EXPECT_EQ(option.find("Ofast"), std::string::npos) << "never --Ofast-compile: 70-120x slower";
    EXPECT_EQ(option.find("include-path"), std::string::npos) << "no machine paths in the key";
  }
}

TEST(Compiler, FailureCarriesTheLogAndTheConfig) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  CompileRequest request = rms_norm_request();
  request.source.main.text += "\n__global__ void broken() { undeclared_name_q4jit = 1; }\n";
  const auto compiled = compiler.compile(request);
  ASSERT_FALSE(compiled.ok());
  const Error& error = compiled.error();
  EXPECT_NE(std::string(error.what()).find("bt256.vw8.sr0"), std::string::npos) << error.what();
  EXPECT_EQ(context_value(error, "config"), "bt256.vw8.sr0");
  EXPECT_NE(context_value(error, "log").find("undeclared_name_q4jit"), std::string::npos)
      << error.describe();
  EXPECT_NE(context_value(error, "options").find("sm_90"), std::string::npos);
}

TEST(Compiler, SelectTarget) {
  const std::vector<int> supported = {75, 80, 86, 89, 90, 100, 120};
  EXPECT_EQ(select_target(90, supported).label(), "sm_90");
  EXPECT_EQ(select_target(130, supported).label(), "compute_120");  // newer than NVRTC knows
  EXPECT_EQ(select_target(87, supported).label(), "compute_86");
  EXPECT_THROW(select_target(70, supported), Error);
  EXPECT_THROW(parse_sm("sm_9x"), Error);
  EXPECT_EQ(parse_sm("sm_89"), 89);
}

TEST(CompileKey, StableForEqualInputsAndDifferentForEachChange) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  const CompileRequest base = rms_norm_request();
  const std::string key = compile_key(base, compiler);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(compile_key(rms_norm_request(), compiler), key);

  std::vector<std::pair<std::string, CompileRequest>> changes;
  changes.emplace_back("source", base).second.source.main.text += " ";
  ASSERT_FALSE(base.source.headers.empty());
  changes.emplace_back("header", base).second.source.headers[0].text += " ";
  changes.emplace_back("option", base).second.extra_options.push_back("-DQ4JIT_TEST=1");
  changes.emplace_back("arch", base).second.target.sm = 89;
  changes.emplace_back("ptx", base).second.target.ptx = true;
  changes.emplace_back("name expression", base).second.name_expressions[0] =
      "rms_norm_kernel<128, 8, false>";
  for (const auto& [what, request] : changes) {
    EXPECT_NE(compile_key(request, compiler), key) << what;
  }
  // Option order does not matter (options are sorted).
  CompileRequest two = base, swapped = base;
  two.extra_options = {"-DA=1", "-DB=2"};
  swapped.extra_options = {"-DB=2", "-DA=1"};
  EXPECT_EQ(compile_key(two, compiler), compile_key(swapped, compiler));
}

// The tensor-core families declare sm_80 because below it they cannot compile at all; this keeps
// the declaration honest (a family that compiles for sm_75 should not claim sm_80).
TEST(Compiler, FamiliesBelowTheirMinimumArchitectureDoNotCompile) {
  Q4JIT_REQUIRE_COMPILER(compiler);
  KernelService service(compiler, nullptr, KernelServiceOptions{});
  int checked = 0;
  for (const KernelFamily& family : kernel_families()) {
    if (family.min_sm <= 75) continue;
    const auto result =
        service.get(make_request(family, family.default_variants.front(), {75, false}));
    EXPECT_FALSE(result.ok()) << family.name << " compiles for sm_75 but declares sm_"
                              << family.min_sm;
    ++checked;
  }
  EXPECT_GE(checked, 1) << "no family declares a minimum above sm_75";
}

}  // namespace
}  // namespace q4jit
