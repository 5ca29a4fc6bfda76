#include "tests/support/test_support.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.hpp"

namespace q4jit::test {

namespace fs = std::filesystem;

std::optional<fs::path> shared_dir() {
  if (const char* env = std::getenv("Q4JIT_SHARED_DIR"); env && *env) {
    if (fs::is_directory(env)) return fs::path(env);
    return std::nullopt;
  }
  const fs::path beside = fs::path(Q4JIT_SOURCE_DIR).parent_path() / "shared";
  if (fs::is_directory(beside / "models")) return beside;
  return std::nullopt;
}

fs::path default_model_dir() {
  return fs::path(Q4JIT_SOURCE_DIR) / "models" / "fixture";
}

fs::path fixture(const std::string& name) {
  return fs::path(Q4JIT_SOURCE_DIR) / "tests" / "fixtures" / name;
}

TempDir::TempDir() {
  std::random_device random;
  const fs::path base = fs::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path candidate = base / ("q4jit-test-" + std::to_string(random()));
    if (fs::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw Error(base.string() + ": cannot create a temporary folder");
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

void write_tiny_model(const fs::path& dir, int group_size, bool act_order, bool sym, uint64_t seed,
                      int shards) {
  SynthSpec spec;
  spec.config = tiny_config(4096);
  if (group_size != 0) {
    QuantizationConfig quantization;
    quantization.group_size = group_size;
    quantization.desc_act = act_order;
    quantization.sym = sym;
    spec.config.quantization = quantization;
  }
  spec.seed = seed;
  spec.shards = shards;
  write_synthetic_model(dir, spec);
  fs::copy_file(fixture("tokenizer.model"), dir / "tokenizer.model",
                fs::copy_options::overwrite_existing);
}

static std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

double logits_relative_error(std::span<const float> actual, std::span<const float> expected) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    difference += (double(actual[i]) - expected[i]) * (double(actual[i]) - expected[i]);
    norm += double(expected[i]) * expected[i];
  }
  return std::sqrt(difference / norm);
}

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

CommandResult run_q4jit(const std::string& arguments) {
  TempDir scratch;
  const fs::path out = scratch / "stdout";
  const fs::path err = scratch / "stderr";
  const std::string command = std::string("'") + Q4JIT_BINARY + "' " + arguments + " >'" +
                              out.string() + "' 2>'" + err.string() + "' </dev/null";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_all(out);
  result.err = read_all(err);
  return result;
}

}  // namespace q4jit::test
