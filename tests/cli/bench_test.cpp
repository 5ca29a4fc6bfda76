// `q4jit bench` on the CPU engine with the default model (the GPU numbers need the GPU machine):
// every field of the JSON line present and positive, the KV cache sized for prompt + generated
// tokens, the per-shape section skipped with its reason, progress on stderr, and one-line errors
// for lengths the model cannot hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tests/support/test_support.hpp"

namespace q4jit::test {
namespace {

namespace fs = std::filesystem;

// Appended piece by piece: "'" + string trips GCC 12's false -Wrestrict at -O3.
std::string quote(const fs::path& path) {
  std::string quoted = "'";
  quoted += path.string();
  quoted += "'";
  return quoted;
}

void expect_one_line_error(const CommandResult& result, const std::string& names) {
  EXPECT_EQ(result.exit_code, 1) << result.err;
  ASSERT_EQ(result.err.rfind("q4jit: error: ", 0), 0u) << result.err;
  const std::string first_line = result.err.substr(0, result.err.find('\n'));
  EXPECT_NE(first_line.find(names), std::string::npos) << first_line;
  EXPECT_LE(std::count(result.err.begin(), result.err.end(), '\n'), 2) << result.err;
}

void expect_speed(const nlohmann::json& speed, int context, int tokens) {
  EXPECT_EQ(speed["context_tokens"], context) << speed;
  EXPECT_EQ(speed["tokens"], tokens) << speed;
  EXPECT_GT(speed["seconds"].get<double>(), 0) << speed;
  EXPECT_GT(speed["tokens_per_second"].get<double>(), 0) << speed;
  EXPECT_NEAR(speed["tokens_per_second"].get<double>() * speed["seconds"].get<double>(), tokens,
              1e-6 * tokens);
}

TEST(CliBench, CpuJsonHasEveryMeasurement) {
  const CommandResult result = run_q4jit("bench -m " + quote(default_model_dir()) +
                                         " --device cpu --prompt-tokens 64 --gen-tokens 8 --json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  ASSERT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1) << result.out;
  const auto report = nlohmann::json::parse(result.out);
  EXPECT_EQ(report["device"], "cpu");
  EXPECT_EQ(report["config"]["layers"], 6);
  EXPECT_EQ(report["config"]["group_size"], 128);
  EXPECT_GT(report["load_seconds"].get<double>(), 0);
  const auto& memory = report["memory"];
  // The fixture dequantized to fp32: about 4 bytes per parameter (4096 x 512 embedding, lm_head).
  EXPECT_GT(memory["weights_bytes"].get<int64_t>(), int64_t(4) * 2 * 4096 * 512);
  // fp32 keys and values: 6 layers x 72 positions x 4 KV heads x 64 x 4 bytes x 2.
  EXPECT_EQ(memory["cache_bytes"].get<int64_t>(), int64_t(6) * 72 * 4 * 64 * 4 * 2);
  EXPECT_GT(memory["workspace_bytes"].get<int64_t>(), 0);
  expect_speed(report["prompt"], 0, 64);
  expect_speed(report["generation_long_context"], 64, 8);
  expect_speed(report["generation_short_context"], 4, 8);
  const std::string skipped = report["matmul"]["skipped"];
  EXPECT_NE(skipped.find("--device cpu"), std::string::npos) << skipped;
  for (const char* step : {"q4jit: bench: loaded on cpu", "q4jit: bench: prompt: 64 tokens",
                           "q4jit: bench: generation: 8 tokens after 4"})
    EXPECT_NE(result.err.find(step), std::string::npos) << step << " in " << result.err;
}

TEST(CliBench, TextReportNamesEachMeasurement) {
  const CommandResult result = run_q4jit("bench -m " + quote(default_model_dir()) +
                                         " --device cpu --prompt-tokens 16 --gen-tokens 4");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* text : {"load", "KV cache", "prompt          16 tokens", "4 tokens after 16",
                           "4 tokens after 4", "skipped: --device cpu"})
    EXPECT_NE(result.out.find(text), std::string::npos) << text << " in " << result.out;
}

TEST(CliBench, LengthsBeyondTheModelAreOneLineErrors) {
  const std::string model = " -m " + quote(default_model_dir()) + " --device cpu";
  // The fixture holds 2048 positions.
  expect_one_line_error(run_q4jit("bench" + model + " --prompt-tokens 2000 --gen-tokens 49"),
                        "2048 positions");
  expect_one_line_error(run_q4jit("bench" + model + " --prompt-tokens 0"), "--prompt-tokens");
  expect_one_line_error(run_q4jit("bench" + model + " --gen-tokens 0"), "--gen-tokens");
  expect_one_line_error(run_q4jit("bench" + model + " --m 1,x"), "--m");
  expect_one_line_error(run_q4jit("bench -m " + quote("/nonexistent/model") + " --device cpu"),
                        "/nonexistent/model");
}

}  // namespace
}  // namespace q4jit::test
