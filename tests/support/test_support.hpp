// Shared helpers of the test suites: where the shared goldens are, temporary folders, tiny
// random models written with the project's own writer, and running the q4jit binary.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>

#include "model/synth.hpp"

namespace q4jit::test {

// ../shared next to the source tree (or $Q4JIT_SHARED_DIR); nullopt when absent.
std::optional<std::filesystem::path> shared_dir();
// Path of the embedded default model (models/fixture in the source tree).
std::filesystem::path default_model_dir();
// tests/fixtures/<name>.
std::filesystem::path fixture(const std::string& name);

// A fresh empty folder under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Writes a tiny random model (tiny_config) into dir with the fixture tokenizer copied beside it.
// group_size: 0 for fp16, -1 for no-group GPTQ, else the GPTQ group size.
void write_tiny_model(const std::filesystem::path& dir, int group_size, bool act_order,
                      bool sym = true, uint64_t seed = 1, int shards = 1);

// ||actual - expected|| / ||expected|| over whole logit tensors (the engines' comparisons).
double logits_relative_error(std::span<const float> actual, std::span<const float> expected);
// The index of the largest logit (greedy decoding).
int32_t argmax(std::span<const float> logits);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the built q4jit binary with the arguments (a shell-quoted string).
CommandResult run_q4jit(const std::string& arguments);

}  // namespace q4jit::test

// Skips the current test with a visible reason when ../shared is absent; else binds `var`.
#define Q4JIT_REQUIRE_SHARED(var)                                  \
  const auto var##_opt = ::q4jit::test::shared_dir();              \
  if (!var##_opt)                                                  \
    GTEST_SKIP() << "../shared not found (set Q4JIT_SHARED_DIR): " \
                    "golden comparisons skipped";                  \
  const std::filesystem::path var = *var##_opt
