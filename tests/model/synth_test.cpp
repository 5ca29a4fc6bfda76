// The synthetic model writer (model/synth.hpp) as `q4jit synth` uses it: the presets' shapes,
// folders that load_model reads back with the quantization asked for (act-order g_idx a valid
// assignment of group_size rows per group, asymmetric zeros that are not all 7), progress
// reports, shared permutations of projections that read one input, and the trained tokenizer
// (exact vocabulary, Llama's special ids, reproducible).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "common/error.hpp"
#include "model/safetensors.hpp"
#include "model/synth.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

SynthSpec fixture_like_spec(int group_size, bool act_order, bool sym) {
  SynthSpec spec;
  spec.config = synth_preset("fixture-like");
  QuantizationConfig quantization;
  quantization.group_size = group_size;
  quantization.desc_act = act_order;
  quantization.sym = sym;
  spec.config.quantization = quantization;
  spec.seed = 11;
  return spec;
}

std::vector<int32_t> read_i32(const TensorSet& tensors, const std::string& name) {
  const TensorView& view = tensors.get(name);
  std::vector<int32_t> values(view.bytes.size() / 4);
  std::memcpy(values.data(), view.bytes.data(), view.bytes.size());
  return values;
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Synth, PresetsHaveTheLlamaShapes) {
  const std::vector<std::string> names = synth_preset_names();
  for (const char* name : {"llama-7b", "llama-13b", "llama-70b", "fixture-like"})
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  const LlamaConfig b7 = synth_preset("llama-7b");
  EXPECT_EQ(b7.hidden_size, 4096);
  EXPECT_EQ(b7.intermediate_size, 11008);
  EXPECT_EQ(b7.num_hidden_layers, 32);
  EXPECT_EQ(b7.num_key_value_heads, 32);
  EXPECT_EQ(b7.vocab_size, 32000);
  const LlamaConfig b13 = synth_preset("llama-13b");
  EXPECT_EQ(b13.hidden_size, 5120);
  EXPECT_EQ(b13.intermediate_size, 13824);
  EXPECT_EQ(b13.num_hidden_layers, 40);
  EXPECT_EQ(b13.head_dim, 128);
  const LlamaConfig b70 = synth_preset("llama-70b");
  EXPECT_EQ(b70.hidden_size, 8192);
  EXPECT_EQ(b70.intermediate_size, 28672);
  EXPECT_EQ(b70.num_hidden_layers, 80);
  EXPECT_EQ(b70.num_attention_heads, 64);
  EXPECT_EQ(b70.num_key_value_heads, 8);
  EXPECT_EQ(b70.head_dim, 128);
  const LlamaConfig fixture = synth_preset("fixture-like");
  EXPECT_EQ(fixture.hidden_size, 512);
  EXPECT_EQ(fixture.num_key_value_heads, 4);
  EXPECT_EQ(fixture.vocab_size, 4096);
}

TEST(Synth, UnknownPresetIsAnErrorNamingIt) {
  try {
    synth_preset("llama-8b");
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("llama-8b"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("llama-70b"), std::string::npos) << error.what();
  }
}

TEST(Synth, ActOrderAsymmetricFolderLoadsAsAsked) {
  test::TempDir dir;
  write_synthetic_model(dir.path(), fixture_like_spec(128, true, false));
  const Model model = load_model(dir.path());
  EXPECT_EQ(model.config.hidden_size, 512);
  EXPECT_EQ(model.config.num_hidden_layers, 6);
  EXPECT_TRUE(model.quantization.quantized);
  EXPECT_EQ(model.quantization.group_size, 128);
  EXPECT_TRUE(model.quantization.act_order);
  EXPECT_FALSE(model.quantization.sym);

  const TensorSet tensors = TensorSet::open_folder(dir.path());
  for (const char* name : {"model.layers.0.self_attn.q_proj", "model.layers.5.mlp.down_proj"}) {
    const std::vector<int32_t> g_idx = read_i32(tensors, std::string(name) + ".g_idx");
    const int K = int(g_idx.size()), G = K / 128;
    std::map<int32_t, int> rows_per_group;
    bool sequential = true;
    for (int k = 0; k < K; ++k) {
      ASSERT_GE(g_idx[k], 0) << name;
      ASSERT_LT(g_idx[k], G) << name;
      ++rows_per_group[g_idx[k]];
      sequential = sequential && g_idx[k] == k / 128;
    }
    EXPECT_FALSE(sequential) << name << ": act-order g_idx is the identity";
    ASSERT_EQ(int(rows_per_group.size()), G) << name;
    for (const auto& [group, rows] : rows_per_group) EXPECT_EQ(rows, 128) << name << " " << group;

    const std::vector<int32_t> qzeros = read_i32(tensors, std::string(name) + ".qzeros");
    int sevens = 0, nibbles = 0;
    for (const int32_t word : qzeros) {
      for (int j = 0; j < 8; ++j, ++nibbles) {
        const int zero = (uint32_t(word) >> (4 * j)) & 15;
        EXPECT_GE(zero, 3);
        EXPECT_LE(zero, 12);
        sevens += zero == 7;
      }
    }
    EXPECT_LT(sevens, nibbles / 4) << name << ": asymmetric zeros are mostly 7";
  }
  // Projections reading one input share its permutation, as in real checkpoints (so q, k, v and
  // gate, up can run fused); others differ.
  const std::string layer = "model.layers.2.";
  auto g_idx = [&](const std::string& projection) {
    return read_i32(tensors, layer + projection + ".g_idx");
  };
  EXPECT_EQ(g_idx("self_attn.q_proj"), g_idx("self_attn.k_proj"));
  EXPECT_EQ(g_idx("self_attn.q_proj"), g_idx("self_attn.v_proj"));
  EXPECT_EQ(g_idx("mlp.gate_proj"), g_idx("mlp.up_proj"));
  EXPECT_NE(g_idx("self_attn.q_proj"), g_idx("self_attn.o_proj"));
  EXPECT_NE(g_idx("self_attn.q_proj"), g_idx("mlp.gate_proj"));
}

TEST(Synth, NoGroupFolderHasOneGroupPerProjection) {
  test::TempDir dir;
  write_synthetic_model(dir.path(), fixture_like_spec(-1, false, true));
  const Model model = load_model(dir.path());
  const GptqLinear& down = *model.weights.layers[0].down.gptq;
  EXPECT_EQ(down.G, 1);
  EXPECT_EQ(down.group_size, 1408);
  EXPECT_TRUE(model.quantization.sym);
  EXPECT_FALSE(model.quantization.act_order);
  EXPECT_EQ(model.quantization.group_size, -1);  // K differs between projections
}

TEST(Synth, ProgressCountsEveryByteOnce) {
  test::TempDir dir;
  SynthSpec spec = fixture_like_spec(32, false, true);
  std::vector<std::pair<int64_t, int64_t>> reports;
  spec.progress = [&reports](int64_t done, int64_t total) { reports.emplace_back(done, total); };
  write_synthetic_model(dir.path(), spec);
  ASSERT_GT(reports.size(), size_t(6 * 7));  // at least one report per projection
  for (size_t i = 1; i < reports.size(); ++i) {
    EXPECT_GT(reports[i].first, reports[i - 1].first);
    EXPECT_EQ(reports[i].second, reports[0].second);
  }
  EXPECT_EQ(reports.back().first, reports.back().second);
  const int64_t file_size = int64_t(fs::file_size(dir / "model.safetensors"));
  EXPECT_LT(reports.back().second, file_size);  // the file adds its header
  EXPECT_GT(reports.back().second, file_size - (1 << 20));
}

TEST(Synth, TokenizerHasTheModelsVocabularyAndLlamasSpecialIds) {
  test::TempDir dir;
  for (const int vocab : {4096, 32000}) {
    const fs::path file = dir / ("tokenizer" + std::to_string(vocab) + ".model");
    write_synthetic_tokenizer(file, vocab);
    const Tokenizer tokenizer = Tokenizer::load(file);
    EXPECT_EQ(tokenizer.vocab_size(), vocab);
    EXPECT_EQ(tokenizer.bos_id(), 1);
    EXPECT_EQ(tokenizer.eos_id(), 2);
    const std::string text = "In the beginning God created 42 worlds, naïvely!";
    const std::vector<int32_t> ids = tokenizer.encode(text, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tokenizer.decode(ids), text);
    // The ids a random model may produce all decode (the padding pieces to nothing).
    EXPECT_NO_THROW(tokenizer.decode({3, vocab / 2, vocab - 1}));
  }
  write_synthetic_tokenizer(dir / "again.model", 4096);
  EXPECT_EQ(file_bytes(dir / "again.model"), file_bytes(dir / "tokenizer4096.model"));
  EXPECT_THROW(write_synthetic_tokenizer(dir / "small.model", 300), Error);
}

}  // namespace
}  // namespace q4jit
