// The q4jit binary as a user runs it: every command explains itself with --help, bad input ends
// in one line on stderr naming the file and the problem with exit code 1 (never a crash), and the
// main jobs work on the embedded default model.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/model/checkpoint_edit.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit::test {
namespace {

namespace fs = std::filesystem;

std::string quote(const fs::path& path) {
  return "'" + path.string() + "'";
}

int count_lines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

// A failure as the CLI must report it: exit 1, one error line (a hint line may follow), naming
// what it concerns.
void expect_one_line_error(const CommandResult& result, const std::string& names) {
  EXPECT_EQ(result.exit_code, 1) << result.err;
  ASSERT_EQ(result.err.rfind("q4jit: error: ", 0), 0u) << result.err;
  const std::string first_line = result.err.substr(0, result.err.find('\n'));
  EXPECT_NE(first_line.find(names), std::string::npos) << first_line;
  EXPECT_LE(count_lines(result.err), 2) << result.err;
}

TEST(Cli, EveryCommandHasHelp) {
  const CommandResult top = run_q4jit("--help");
  ASSERT_EQ(top.exit_code, 0) << top.err;
  for (const char* command :
       {"info", "tokenize", "generate", "perplexity", "devices", "kernels", "cache"}) {
    EXPECT_NE(top.out.find(command), std::string::npos) << command;
    const CommandResult help = run_q4jit(std::string(command) + " --help");
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_NE(help.out.find("--"), std::string::npos) << command << " lists no option";
  }
}

TEST(Cli, InfoDescribesTheDefaultModel) {
  const CommandResult result = run_q4jit("info --json -m " + quote(default_model_dir()));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto info = nlohmann::json::parse(result.out);
  EXPECT_EQ(info["layers"], 6);
  EXPECT_EQ(info["group_size"], 128);
  EXPECT_EQ(info["act_order"], true);
  EXPECT_EQ(info["kv_heads"], 4);
}

TEST(Cli, GreedyGenerationOnTheDefaultModelIsReproducible) {
  const std::string command = "generate --json --greedy -n 12 --device cpu -p 'The function' -m " +
                              quote(default_model_dir());
  const CommandResult first = run_q4jit(command);
  const CommandResult second = run_q4jit(command);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto a = nlohmann::json::parse(first.out);
  const auto b = nlohmann::json::parse(second.out);
  EXPECT_EQ(a["generated_ids"].size(), 12u);
  EXPECT_EQ(a["generated_ids"], b["generated_ids"]);
  EXPECT_EQ(a["stop_reason"], "max_new_tokens");
  EXPECT_EQ(a["device"], "cpu");
}

TEST(Cli, StreamedTextKeepsTheSpaceAfterThePrompt) {
  const CommandResult result = run_q4jit(
      "generate --greedy -n 8 --device cpu -p 'In the beginning' -m " + quote(default_model_dir()));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  ASSERT_GT(result.out.size(), std::string("In the beginning").size());
  EXPECT_EQ(result.out.rfind("In the beginning ", 0), 0u) << result.out;
}

TEST(Cli, PerplexityOnPlainText) {
  TempDir dir;
  std::ofstream(dir / "text.txt") << "In the beginning God created the heaven and the earth. "
                                     "And the earth was without form, and void.\n";
  const CommandResult result =
      run_q4jit("perplexity --json --device cpu --chunk-size 16 -m " + quote(default_model_dir()) +
                " --data " + quote(dir / "text.txt"));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto out = nlohmann::json::parse(result.out);
  EXPECT_GE(out["chunks"].get<int>(), 1);
  EXPECT_GT(out["perplexity"].get<double>(), 1.0);
  EXPECT_LT(out["perplexity"].get<double>(), 4096.0);
}

TEST(Cli, MissingModelFolder) {
  expect_one_line_error(run_q4jit("info -m /nonexistent/model"), "/nonexistent/model");
}

TEST(Cli, TruncatedShard) {
  TempDir dir;
  write_tiny_model(dir.path(), 32, true);
  const fs::path shard = dir / "model.safetensors";
  ASSERT_TRUE(fs::exists(shard));
  fs::resize_file(shard, fs::file_size(shard) / 2);
  expect_one_line_error(run_q4jit("info -m " + quote(dir.path())), "model.safetensors");
}

TEST(Cli, MissingTensor) {
  TempDir dir;
  write_tiny_model(dir.path(), 32, false);
  edit_tensors(dir / "model.safetensors", [](std::vector<RawTensor>& tensors) {
    std::erase_if(tensors,
                  [](const RawTensor& t) { return t.name.ends_with("0.mlp.up_proj.scales"); });
  });
  expect_one_line_error(run_q4jit("generate -p hi -m " + quote(dir.path())), "up_proj.scales");
}

TEST(Cli, ConfigMissingAField) {
  TempDir dir;
  write_tiny_model(dir.path(), 0, false);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  config.erase("hidden_size");
  std::ofstream(dir / "config.json") << config.dump();
  expect_one_line_error(
      run_q4jit("perplexity --data " + quote(dir / "config.json") + " -m " + quote(dir.path())),
      "hidden_size");
}

TEST(Cli, CorruptTokenizer) {
  TempDir dir;
  write_tiny_model(dir.path(), 0, false);
  std::ofstream(dir / "tokenizer.model", std::ios::trunc) << "not a sentencepiece model";
  expect_one_line_error(run_q4jit("tokenize hello -m " + quote(dir.path())), "tokenizer.model");
}

TEST(Cli, PromptLongerThanTheCache) {
  const CommandResult result = run_q4jit(
      "generate --device cpu --max-seq-len 4 -p 'one two three "
      "four five six seven eight' -m " +
      quote(default_model_dir()));
  expect_one_line_error(result, "prompt");
}

TEST(Cli, PerplexityDataThatIsNotJsonl) {
  TempDir dir;
  std::ofstream(dir / "bad.jsonl") << "{\"text\": \"fine\"}\nthis is not json\n";
  expect_one_line_error(run_q4jit("perplexity --device cpu -m " + quote(default_model_dir()) +
                                  " --data " + quote(dir / "bad.jsonl")),
                        "bad.jsonl");
}

TEST(Cli, GpuRequestedWithoutAGpu) {
  if (run_q4jit("devices --json").out.find("\"uuid\"") != std::string::npos)
    GTEST_SKIP() << "a GPU is present: the no-GPU message cannot be checked here";
  expect_one_line_error(run_q4jit("generate --device gpu -p hi -m " + quote(default_model_dir())),
                        "--device gpu");
}

}  // namespace
}  // namespace q4jit::test
