// load_model on whole folders: the real fixtures (shapes, detected quantization, timing), tiny
// synthetic models of every kind (GPTQ, fp16, tied embeddings, sharded), dtype conversion of
// dense tensors, and the model-level summary numbers. Per-projection GPTQ checks are in
// gptq_test.cpp; damaged folders in bad_input_test.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "common/error.hpp"
#include "common/half.hpp"
#include "model/weights.hpp"
#include "tests/model/checkpoint_edit.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

// Shapes every Llama folder must have after load, from its config.
void expect_shapes(const Model& model) {
  const LlamaConfig& c = model.config;
  const ModelWeights& w = model.weights;
  EXPECT_EQ(w.embed.size(), size_t(c.vocab_size) * c.hidden_size);
  EXPECT_EQ(w.final_norm.size(), size_t(c.hidden_size));
  ASSERT_EQ(w.layers.size(), size_t(c.num_hidden_layers));
  const int q_out = c.num_attention_heads * c.head_dim;
  const int kv_out = c.num_key_value_heads * c.head_dim;
  for (const LayerWeights& layer : w.layers) {
    EXPECT_EQ(layer.input_norm.size(), size_t(c.hidden_size));
    EXPECT_EQ(layer.post_norm.size(), size_t(c.hidden_size));
    const std::pair<const Linear*, std::pair<int, int>> expected[] = {
        {&layer.q, {c.hidden_size, q_out}},
        {&layer.k, {c.hidden_size, kv_out}},
        {&layer.v, {c.hidden_size, kv_out}},
        {&layer.o, {q_out, c.hidden_size}},
        {&layer.gate, {c.hidden_size, c.intermediate_size}},
        {&layer.up, {c.hidden_size, c.intermediate_size}},
        {&layer.down, {c.intermediate_size, c.hidden_size}}};
    for (const auto& [linear, shape] : expected) {
      EXPECT_EQ(linear->K, shape.first) << linear->name;
      EXPECT_EQ(linear->N, shape.second) << linear->name;
      if (linear->gptq) {
        EXPECT_TRUE(linear->dense.empty()) << linear->name;
        EXPECT_EQ(linear->gptq->qweight.size(), size_t(linear->K / 8) * linear->N);
      } else {
        EXPECT_EQ(linear->dense.size(), size_t(linear->K) * linear->N) << linear->name;
      }
    }
  }
}

struct FixtureCase {
  const char* folder;
  bool quantized;
  bool act_order;
};

void check_fixture(const fs::path& dir, const FixtureCase& c) {
  const auto start = std::chrono::steady_clock::now();
  const Model model = load_model(dir);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("  load_model(%s): %.3f s\n", c.folder, seconds);
  // "Well under a second" on a quiet machine; generous here since the 2 cores are shared.
  EXPECT_LT(seconds, 3.0);
  EXPECT_EQ(model.config.hidden_size, 512);
  EXPECT_EQ(model.config.num_hidden_layers, 6);
  EXPECT_EQ(model.config.vocab_size, 4096);
  expect_shapes(model);
  EXPECT_EQ(model.weights.lm_head.size(), size_t(4096) * 512);
  EXPECT_EQ(model.quantization.quantized, c.quantized);
  EXPECT_EQ(model.quantization.act_order, c.act_order);
  EXPECT_EQ(model.quantization.group_size, c.quantized ? 128 : 0);
  EXPECT_EQ(model.quantization.bits, c.quantized ? 4 : 16);
  EXPECT_TRUE(model.quantization.sym);
  // 4096*512*2 (embed, head) + 6 * (512*512*2 + 512*256*2 + 3*512*1408 + 2*512) + 512.
  EXPECT_EQ(model.parameter_count, 21895680);
  EXPECT_EQ(model.weight_bytes, c.quantized ? 17702400 : 43791360);
  // The norms are real trained values, not a constant.
  EXPECT_NE(model.weights.final_norm[0], model.weights.final_norm[1]);
}

TEST(LoadModel, DefaultFixture) {
  check_fixture(test::default_model_dir(), {"models/fixture", true, true});
}

TEST(LoadModel, SharedFixtures) {
  Q4JIT_REQUIRE_SHARED(shared);
  for (const FixtureCase& c : {FixtureCase{"fixture-gptq-g128", true, false},
                               FixtureCase{"fixture-gptq-g128-act", true, true},
                               FixtureCase{"fixture-fp16", false, false}}) {
    SCOPED_TRACE(c.folder);
    check_fixture(shared / "models" / c.folder, c);
  }
}

TEST(LoadModel, Fp16FixtureDenseWeightsAreTheFileBits) {
  Q4JIT_REQUIRE_SHARED(shared);
  const fs::path dir = shared / "models" / "fixture-fp16";
  const Model model = load_model(dir);
  const TensorSet set = TensorSet::open_folder(dir);
  const TensorView& file_q = set.get("model.layers.3.self_attn.q_proj.weight");
  const std::vector<uint16_t>& dense = model.weights.layers[3].q.dense;
  ASSERT_EQ(dense.size() * 2, file_q.bytes.size());
  EXPECT_EQ(std::memcmp(dense.data(), file_q.bytes.data(), file_q.bytes.size()), 0);
}

TEST(LoadModel, TinySyntheticGptqShardedAndSummary) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 32, true, false, 3, 2);
  const Model model = load_model(dir.path());
  expect_shapes(model);
  EXPECT_TRUE(model.quantization.quantized);
  EXPECT_EQ(model.quantization.group_size, 32);
  EXPECT_TRUE(model.quantization.act_order);
  EXPECT_FALSE(model.quantization.sym);
  EXPECT_EQ(model.config.quantization->source, (dir / "config.json").string());
}

TEST(LoadModel, NoGroupSummaryIsMinusOne) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), -1, false);
  const Model model = load_model(dir.path());
  EXPECT_EQ(model.quantization.group_size, -1);
  EXPECT_EQ(model.weights.layers[0].down.gptq->G, 1);
  EXPECT_EQ(model.weights.layers[0].down.gptq->group_size, 160);
}

TEST(LoadModel, Fp16SyntheticModel) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 0, false);
  const Model model = load_model(dir.path());
  expect_shapes(model);
  EXPECT_FALSE(model.quantization.quantized);
  EXPECT_FALSE(model.weights.layers[1].down.gptq.has_value());
  // Random weights near 1/sqrt(K): none zero-filled, none huge.
  double sum_squares = 0;
  for (uint16_t bits : model.weights.layers[1].down.dense) {
    const float w = half_to_float(bits);
    sum_squares += double(w) * w;
    ASSERT_LE(std::fabs(w), 1.0f / std::sqrt(160.0f) + 1e-3f);
  }
  EXPECT_GT(sum_squares / model.weights.layers[1].down.dense.size(), 0.1 / 160);
}

TEST(LoadModel, DenseF32AndBf16TensorsBecomeF16Bits) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 0, false, true, 4);
  const Model original = load_model(dir.path());
  test::edit_tensors(dir / "model.safetensors", [](std::vector<test::RawTensor>& tensors) {
    test::RawTensor& q = test::tensor_named(tensors, "model.layers.0.self_attn.q_proj.weight");
    std::vector<float> values;
    for (uint16_t bits : q.values<uint16_t>()) values.push_back(half_to_float(bits));
    q.set_values(values);
    q.dtype = DType::F32;
    test::RawTensor& norm = test::tensor_named(tensors, "model.norm.weight");
    std::vector<uint16_t> bf16;
    for (uint16_t bits : norm.values<uint16_t>()) {
      const float value = half_to_float(bits);
      uint32_t word;
      std::memcpy(&word, &value, 4);
      bf16.push_back(uint16_t(word >> 16));
    }
    norm.set_values(bf16);
    norm.dtype = DType::BF16;
  });
  const Model converted = load_model(dir.path());
  EXPECT_EQ(converted.weights.layers[0].q.dense, original.weights.layers[0].q.dense);
  for (size_t i = 0; i < original.weights.final_norm.size(); ++i)
    EXPECT_NEAR(converted.weights.final_norm[i], original.weights.final_norm[i], 1e-2f) << i;
  EXPECT_NE(converted.weight_bytes, original.weight_bytes);
}

TEST(LoadModel, TiedEmbeddingsLeaveLmHeadEmpty) {
  test::TempDir dir;
  SynthSpec spec;
  spec.config = tiny_config(1000);
  spec.config.tie_word_embeddings = true;
  write_synthetic_model(dir.path(), spec);
  const Model model = load_model(dir.path());
  EXPECT_TRUE(model.weights.lm_head.empty());
  EXPECT_EQ(model.weights.embed.size(), size_t(1000) * 64);
  EXPECT_FALSE(TensorSet::open_folder(dir.path()).contains("lm_head.weight"));
}

TEST(LoadModel, SameSeedSameBytesOtherSeedOtherBytes) {
  test::TempDir a, b, c;
  test::write_tiny_model(a.path(), 32, true, true, 21);
  test::write_tiny_model(b.path(), 32, true, true, 21);
  test::write_tiny_model(c.path(), 32, true, true, 22);
  EXPECT_EQ(test::read_file(a / "model.safetensors"), test::read_file(b / "model.safetensors"));
  EXPECT_NE(test::read_file(a / "model.safetensors"), test::read_file(c / "model.safetensors"));
}

}  // namespace
}  // namespace q4jit
