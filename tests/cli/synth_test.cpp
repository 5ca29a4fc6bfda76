// `q4jit synth` as a user runs it: a fixture-sized folder that info, tokenize and generate accept
// with the quantization asked for, progress on stderr and one summary line, no-group spelled as
// GPTQ spells it, reproducible bytes per seed, and one-line errors for bad options and folders.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
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

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Exit 1 and one "q4jit: error:" line (a hint may follow) that names `names`.
void expect_one_line_error(const CommandResult& result, const std::string& names) {
  EXPECT_EQ(result.exit_code, 1) << result.err;
  ASSERT_EQ(result.err.rfind("q4jit: error: ", 0), 0u) << result.err;
  const std::string first_line = result.err.substr(0, result.err.find('\n'));
  EXPECT_NE(first_line.find(names), std::string::npos) << first_line;
  EXPECT_LE(std::count(result.err.begin(), result.err.end(), '\n'), 2) << result.err;
}

CommandResult synth(const std::string& options, const fs::path& out) {
  return run_q4jit("synth --preset fixture-like " + options + " --out " + quote(out));
}

TEST(CliSynth, HelpListsThePresets) {
  const CommandResult help = run_q4jit("synth --help");
  ASSERT_EQ(help.exit_code, 0) << help.err;
  for (const char* text : {"llama-7b", "llama-13b", "llama-70b", "fixture-like", "--group-size",
                           "--act-order", "--asym", "--force"})
    EXPECT_NE(help.out.find(text), std::string::npos) << text;
}

TEST(CliSynth, ActOrderAsymmetricFolderWorksWithTheOtherCommands) {
  TempDir dir;
  const fs::path model = dir / "model";
  const CommandResult result = synth("--group-size 64 --act-order --asym --seed 3", model);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.err.find("synth: MB written"), std::string::npos) << result.err;
  EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1) << result.out;
  for (const char* text : {"6 layers", "hidden 512", "group 64", "act-order", "asym", " MB in "})
    EXPECT_NE(result.out.find(text), std::string::npos) << text << " in " << result.out;

  const CommandResult info = run_q4jit("info --json -m " + quote(model));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const auto described = nlohmann::json::parse(info.out);
  EXPECT_EQ(described["layers"], 6);
  EXPECT_EQ(described["hidden_size"], 512);
  EXPECT_EQ(described["intermediate_size"], 1408);
  EXPECT_EQ(described["kv_heads"], 4);
  EXPECT_EQ(described["vocab_size"], 4096);
  EXPECT_EQ(described["group_size"], 64);
  EXPECT_EQ(described["act_order"], true);
  EXPECT_EQ(described["sym"], false);

  const CommandResult tokens = run_q4jit("tokenize --json -m " + quote(model) + " 'In the end'");
  ASSERT_EQ(tokens.exit_code, 0) << tokens.err;
  EXPECT_FALSE(nlohmann::json::parse(tokens.out)["ids"].empty());
  const CommandResult generated = run_q4jit(
      "generate --json --greedy --ignore-eos -n 6 "
      "--device cpu -p 'In the end' -m " +
      quote(model));
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_EQ(nlohmann::json::parse(generated.out)["generated_ids"].size(), 6u);
}

TEST(CliSynth, GroupSizeZeroIsNoGroupWrittenAsMinusOne) {
  TempDir dir;
  for (const char* group_size : {"0", "-1"}) {
    const fs::path model = dir / (std::string("model") + group_size);
    const CommandResult result = synth(std::string("--group-size ") + group_size, model);
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("no-group"), std::string::npos) << result.out;
    const auto quantize = nlohmann::json::parse(file_bytes(model / "quantize_config.json"));
    EXPECT_EQ(quantize["group_size"], -1);
    const auto info = nlohmann::json::parse(run_q4jit("info --json -m " + quote(model)).out);
    EXPECT_EQ(info["group_size"], -1);  // one group per projection, K differs between them
    EXPECT_EQ(info["act_order"], false);
    EXPECT_EQ(info["sym"], true);
  }
}

TEST(CliSynth, SameSeedSameBytes) {
  TempDir dir;
  ASSERT_EQ(synth("--seed 5", dir / "a").exit_code, 0);
  ASSERT_EQ(synth("--seed 5", dir / "b").exit_code, 0);
  ASSERT_EQ(synth("--seed 6", dir / "c").exit_code, 0);
  const std::string a = file_bytes(dir / "a" / "model.safetensors");
  EXPECT_GT(a.size(), size_t(10) << 20);
  EXPECT_EQ(a, file_bytes(dir / "b" / "model.safetensors"));
  EXPECT_NE(a, file_bytes(dir / "c" / "model.safetensors"));
  EXPECT_EQ(file_bytes(dir / "a" / "tokenizer.model"), file_bytes(dir / "c" / "tokenizer.model"));
}

TEST(CliSynth, NonEmptyFolderNeedsForce) {
  TempDir dir;
  const fs::path model = dir / "model";
  ASSERT_EQ(synth("--shards 2", model).exit_code, 0);
  expect_one_line_error(synth("", model), "not empty");
  const CommandResult forced = synth("--force", model);
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  // The old shards and index are gone, so the folder is the new single-file model.
  EXPECT_FALSE(fs::exists(model / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(model / "model-00001-of-00002.safetensors"));
  EXPECT_EQ(run_q4jit("info -m " + quote(model)).exit_code, 0);
}

TEST(CliSynth, BadOptionsAreOneLineErrors) {
  TempDir dir;
  expect_one_line_error(run_q4jit("synth --preset llama-8b --out " + quote(dir / "x")), "llama-8b");
  expect_one_line_error(synth("--group-size 100", dir / "x"), "--group-size 100");
  expect_one_line_error(synth("--group-size 4", dir / "x"), "--group-size 4");
  expect_one_line_error(synth("--shards 0", dir / "x"), "--shards");
  EXPECT_FALSE(fs::exists(dir / "x")) << "a refused synth created its folder";
  std::ofstream(dir / "file") << "not a folder";
  expect_one_line_error(synth("", dir / "file"), "not a folder");
}

}  // namespace
}  // namespace q4jit::test
