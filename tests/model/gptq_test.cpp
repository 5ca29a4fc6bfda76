// GPTQ loading (model/gptq.cpp) against the format itself: every projection's dequantization is
// compared with a straightforward formula evaluated on the raw file tensors, for tiny synthetic
// models (sequential, act-order, no-group, asymmetric, without g_idx) and for the real fixtures;
// the act-order repacking must reproduce the file's rows through x_map; act_order_permutation
// must be a stable permutation. Malformed GPTQ tensors are in bad_input_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <ostream>
#include <random>

#include "common/error.hpp"
#include "common/half.hpp"
#include "model/config.hpp"
#include "model/gptq.hpp"
#include "tests/model/checkpoint_edit.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> raw_i32(const TensorView& tensor) {
  std::vector<int32_t> values(tensor.bytes.size() / 4);
  std::memcpy(values.data(), tensor.bytes.data(), values.size() * 4);
  return values;
}

// The file's tensors as the format document defines them, nothing shared with gptq.cpp.
struct RawGptq {
  int K, N, G;
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<float> scales;

  RawGptq(const TensorSet& set, const std::string& prefix, int K_, int N_) : K(K_), N(N_) {
    qweight = raw_i32(set.get(prefix + ".qweight"));
    qzeros = raw_i32(set.get(prefix + ".qzeros"));
    scales = to_float(set.get(prefix + ".scales"));
    G = int(set.get(prefix + ".qzeros").shape[0]);
    if (set.contains(prefix + ".g_idx")) g_idx = raw_i32(set.get(prefix + ".g_idx"));
  }
  int q(int k, int n) const { return (qweight[size_t(k / 8) * N + n] >> (4 * (k % 8))) & 15; }
  int group(int k) const { return g_idx.empty() ? k / (K / G) : g_idx[k]; }
  // W [N, K]: w(k, n) = scales[g(k)][n] * (q(k, n) - (z_stored(g(k), n) + 1)).
  std::vector<float> dequantize() const {
    std::vector<float> weight(size_t(N) * K);
    for (int k = 0; k < K; ++k) {
      const int g = group(k);
      for (int n = 0; n < N; ++n) {
        const int zero = ((qzeros[size_t(g) * (N / 8) + n / 8] >> (4 * (n % 8))) & 15) + 1;
        weight[size_t(n) * K + k] = scales[size_t(g) * N + n] * float(q(k, n) - zero);
      }
    }
    return weight;
  }
};

struct Projection {
  std::string prefix;
  int K, N;
};

std::vector<Projection> projections(const LlamaConfig& c) {
  std::vector<Projection> result;
  const int q_out = c.num_attention_heads * c.head_dim;
  const int kv_out = c.num_key_value_heads * c.head_dim;
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    result.push_back({p + "self_attn.q_proj", c.hidden_size, q_out});
    result.push_back({p + "self_attn.k_proj", c.hidden_size, kv_out});
    result.push_back({p + "self_attn.v_proj", c.hidden_size, kv_out});
    result.push_back({p + "self_attn.o_proj", q_out, c.hidden_size});
    result.push_back({p + "mlp.gate_proj", c.hidden_size, c.intermediate_size});
    result.push_back({p + "mlp.up_proj", c.hidden_size, c.intermediate_size});
    result.push_back({p + "mlp.down_proj", c.intermediate_size, c.hidden_size});
  }
  return result;
}

// Sorted row s must be the file's row x_map[s], and lie in group s / group_size.
void check_sorted_rows(const GptqLinear& linear, const RawGptq& raw) {
  ASSERT_EQ(int(linear.x_map.size()), linear.K);
  for (int s = 0; s < linear.K; ++s) {
    const int original = linear.x_map[s];
    ASSERT_EQ(raw.group(original), s / linear.group_size) << "sorted row " << s;
    for (int n = 0; n < linear.N; ++n)
      ASSERT_EQ(linear.q_sorted(s, n), raw.q(original, n)) << "sorted row " << s << " column " << n;
  }
}

// Checks every projection of the folder: dequantization equals the raw formula exactly, and the
// sorted rows reproduce the file's rows. Returns the loaded projections for further checks.
std::vector<GptqLinear> check_folder(const fs::path& dir) {
  const LlamaConfig config = load_config(dir);
  const TensorSet set = TensorSet::open_folder(dir);
  std::vector<GptqLinear> loaded;
  for (const Projection& p : projections(config)) {
    SCOPED_TRACE(p.prefix);
    const GptqLinear linear = load_gptq_linear(set, p.prefix, p.K, p.N, config.quantization);
    const RawGptq raw(set, p.prefix, p.K, p.N);
    EXPECT_EQ(linear.G, raw.G);
    EXPECT_EQ(linear.group_size, p.K / raw.G);
    EXPECT_EQ(dequantize_gptq(linear), raw.dequantize());
    if (linear.act_order) {
      check_sorted_rows(linear, raw);
    } else {
      EXPECT_TRUE(linear.x_map.empty());
      EXPECT_EQ(linear.qweight, raw.qweight);
    }
    loaded.push_back(linear);
  }
  return loaded;
}

struct SynthCase {
  const char* name;
  int group_size;  // -1: no group
  bool act_order;
  bool sym;
  bool write_g_idx;
  int expected_group_size;
};
void PrintTo(const SynthCase& c, std::ostream* out) {
  *out << c.name;
}

class GptqSynthetic : public testing::TestWithParam<SynthCase> {};

TEST_P(GptqSynthetic, DequantizationMatchesFormulaAndRowsSurviveSorting) {
  const SynthCase& c = GetParam();
  test::TempDir dir;
  SynthSpec spec;
  spec.config = tiny_config(512);
  spec.config.quantization = QuantizationConfig{4, c.group_size, c.act_order, c.sym, ""};
  spec.seed = 11;
  spec.write_g_idx = c.write_g_idx;
  write_synthetic_model(dir.path(), spec);
  for (const GptqLinear& linear : check_folder(dir.path())) {
    // With one group (no-group) act-order degenerates to sequential: g_idx is all zero.
    EXPECT_EQ(linear.act_order, c.act_order && linear.G > 1) << linear.name;
    EXPECT_EQ(linear.sym, c.sym) << linear.name;
    EXPECT_EQ(linear.group_size, c.expected_group_size == -1 ? linear.K : c.expected_group_size);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GptqSynthetic,
    testing::Values(SynthCase{"sequential_g32", 32, false, true, true, 32},
                    SynthCase{"sequential_g32_no_g_idx", 32, false, true, false, 32},
                    SynthCase{"act_order_g32", 32, true, true, true, 32},
                    SynthCase{"no_group", -1, false, true, true, -1},
                    SynthCase{"no_group_act_order", -1, true, true, true, -1},
                    SynthCase{"asym_g32", 32, false, false, true, 32},
                    SynthCase{"asym_act_order_g32", 32, true, false, true, 32}),
    [](const testing::TestParamInfo<SynthCase>& info) { return std::string(info.param.name); });

TEST(GptqFixture, DefaultModelMatchesFormula) {
  const std::vector<GptqLinear> loaded = check_folder(test::default_model_dir());
  ASSERT_EQ(loaded.size(), 42u);
  for (const GptqLinear& linear : loaded) {
    EXPECT_TRUE(linear.act_order) << linear.name;
    EXPECT_EQ(linear.group_size, 128) << linear.name;
    EXPECT_TRUE(linear.sym) << linear.name;
  }
}

TEST(GptqFixture, SharedFixturesMatchFormula) {
  Q4JIT_REQUIRE_SHARED(shared);
  for (const auto& [name, act_order] :
       {std::pair{"fixture-gptq-g128", false}, std::pair{"fixture-gptq-g128-act", true}}) {
    SCOPED_TRACE(name);
    for (const GptqLinear& linear : check_folder(shared / "models" / name)) {
      EXPECT_EQ(linear.act_order, act_order) << linear.name;
      EXPECT_EQ(linear.group_size, 128) << linear.name;
    }
  }
}

TEST(GptqLoad, ScalesStoredAsF32OrBf16AreConvertedToF16) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 32, true, true, 5);
  const std::string prefix = "model.layers.0.self_attn.q_proj";
  const GptqLinear original =
      load_gptq_linear(TensorSet::open_folder(dir.path()), prefix, 64, 64, std::nullopt);
  for (DType dtype : {DType::F32, DType::BF16}) {
    test::edit_tensors(dir / "model.safetensors", [&](std::vector<test::RawTensor>& tensors) {
      test::RawTensor& scales = test::tensor_named(tensors, prefix + ".scales");
      std::vector<float> values(original.scales.size());
      for (size_t i = 0; i < values.size(); ++i) values[i] = half_to_float(original.scales[i]);
      if (dtype == DType::F32) {
        scales.set_values(values);
      } else {  // bf16 by truncation; the expected fp16 below is computed from the disk value
        std::vector<uint16_t> bits(values.size());
        for (size_t i = 0; i < values.size(); ++i) {
          uint32_t word;
          std::memcpy(&word, &values[i], 4);
          bits[i] = uint16_t(word >> 16);
        }
        scales.set_values(bits);
      }
      scales.dtype = dtype;
    });
    const TensorSet set = TensorSet::open_folder(dir.path());
    const GptqLinear converted = load_gptq_linear(set, prefix, 64, 64, std::nullopt);
    const std::vector<float> on_disk = to_float(set.get(prefix + ".scales"));
    for (size_t i = 0; i < on_disk.size(); ++i)
      ASSERT_EQ(converted.scales[i], float_to_half(on_disk[i])) << dtype_name(dtype) << " " << i;
    EXPECT_EQ(converted.qweight, original.qweight);
  }
}

TEST(GptqLoad, SequentialOrAllZeroGIdxIsNotActOrder) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 32, false, true, 6);
  const std::string prefix = "model.layers.1.mlp.down_proj";  // K = 160, G = 5
  test::edit_tensors(dir / "model.safetensors", [&](std::vector<test::RawTensor>& tensors) {
    test::tensor_named(tensors, prefix + ".g_idx").set_values(std::vector<int32_t>(160, 0));
  });
  const TensorSet set = TensorSet::open_folder(dir.path());
  const GptqLinear linear = load_gptq_linear(set, prefix, 160, 64, std::nullopt);
  EXPECT_FALSE(linear.act_order);
  EXPECT_EQ(linear.G, 5);
  EXPECT_EQ(linear.group_size, 32);
  EXPECT_EQ(linear.qweight, raw_i32(set.get(prefix + ".qweight")));
}

TEST(ActOrderPermutation, IsAStablePermutationSortedByGroup) {
  std::mt19937 generator(42);
  for (int trial = 0; trial < 20; ++trial) {
    const int G = 1 + int(generator() % 9);
    const int K = 8 * (1 + int(generator() % 40));
    std::vector<int32_t> g_idx(K);
    for (int32_t& g : g_idx) g = int32_t(generator() % G);  // unequal groups are fine here
    const std::vector<int32_t> x_map = act_order_permutation(g_idx, G);
    std::vector<int32_t> sorted = x_map;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int32_t> identity(K);
    std::iota(identity.begin(), identity.end(), 0);
    ASSERT_EQ(sorted, identity) << "not a permutation";
    for (int s = 1; s < K; ++s) {
      const int previous = x_map[s - 1], current = x_map[s];
      ASSERT_LE(g_idx[previous], g_idx[current]) << "not sorted by group at " << s;
      if (g_idx[previous] == g_idx[current]) {
        ASSERT_LT(previous, current) << "not stable at " << s;
      }
    }
  }
}

TEST(ActOrderPermutation, RejectsOutOfRangeGroups) {
  EXPECT_THROW(act_order_permutation({0, 1, 3}, 3), Error);
  EXPECT_THROW(act_order_permutation({0, -1}, 2), Error);
}

}  // namespace
}  // namespace q4jit
