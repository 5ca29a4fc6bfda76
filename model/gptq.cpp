// Loading one GPTQ 4-bit projection: reads qweight/qzeros/scales/g_idx, checks every invariant of
// gptq.hpp against K, N and the quantization config, detects act-order and symmetry, and for
// act-order models repacks qweight rows into group order. Also the reference dequantization.
// Model-level assembly (which projections, norms, embeddings) is weights.cpp.
#include "model/gptq.hpp"

#include <cstring>

#include "common/error.hpp"
#include "common/half.hpp"

namespace q4jit {

namespace {

// Below this many weights a loop runs on one thread: waking a team costs more than it saves (the
// fixture's projections are under it, a 7B model's far above).
constexpr size_t kParallelWork = size_t(1) << 22;

std::string subject(const TensorView& tensor) {
  return (tensor.file ? tensor.file->string() + ": " : std::string()) + "tensor '" + tensor.name +
         "'";
}

std::vector<int32_t> copy_i32(const TensorView& tensor) {
  std::vector<int32_t> values(tensor.bytes.size() / 4);
  std::memcpy(values.data(), tensor.bytes.data(), values.size() * 4);  // data may be unaligned
  return values;
}

void expect_rank2(const TensorView& tensor) {
  if (tensor.shape.size() != 2)
    throw Error(subject(tensor) + " has shape " + tensor.shape_string() +
                ", expected 2 dimensions");
}

// qweight must hold K/8 rows; another row count that packs K evenly is another bit width.
void check_qweight(const TensorView& qweight, int K, int N) {
  expect_dtype(qweight, DType::I32);
  expect_rank2(qweight);
  const int64_t rows = qweight.shape[0];
  if (rows != K / 8 && rows > 0 && (rows * 32) % K == 0)
    throw Error(subject(qweight) + " has shape " + qweight.shape_string() + ": " +
                std::to_string(rows * 32 / K) + "-bit packing is not supported (only 4-bit)");
  expect_shape(qweight, {K / 8, N});
}

std::vector<uint16_t> scales_as_f16(const TensorView& scales) {
  if (scales.dtype == DType::F16) {
    std::vector<uint16_t> bits(scales.bytes.size() / 2);
    std::memcpy(bits.data(), scales.bytes.data(), bits.size() * 2);
    return bits;
  }
  const std::vector<float> values = to_float(scales);  // BF16, F32; other dtypes throw
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = float_to_half(values[i]);
  return bits;
}

// True when g_idx carries no information: k / group_size everywhere, or all zero.
bool is_sequential(const std::vector<int32_t>& g_idx, int group_size) {
  bool all_zero = true, in_order = true;
  for (size_t k = 0; k < g_idx.size(); ++k) {
    all_zero = all_zero && g_idx[k] == 0;
    in_order = in_order && g_idx[k] == int32_t(k / size_t(group_size));
  }
  return all_zero || in_order;
}

void check_g_idx(const TensorView& tensor, const std::vector<int32_t>& g_idx, int G,
                 int group_size) {
  std::vector<int64_t> counts(G, 0);
  for (size_t k = 0; k < g_idx.size(); ++k) {
    if (g_idx[k] < 0 || g_idx[k] >= G)
      throw Error(subject(tensor) + ": value " + std::to_string(g_idx[k]) + " at row " +
                  std::to_string(k) + " is out of range [0, " + std::to_string(G) + ")");
    ++counts[g_idx[k]];
  }
  if (is_sequential(g_idx, group_size)) return;
  for (int g = 0; g < G; ++g)
    if (counts[g] != group_size)
      throw Error(subject(tensor) + ": act-order group " + std::to_string(g) + " holds " +
                  std::to_string(counts[g]) + " rows, expected group size " +
                  std::to_string(group_size) + " (groups of unequal size)");
}

void check_against_config(const GptqLinear& linear, const QuantizationConfig& config,
                          const TensorView& qweight) {
  if (config.bits != 4)
    throw Error(config.source + ": bits " + std::to_string(config.bits) +
                " disagrees with the tensors: " + qweight.name + " holds 4-bit values");
  const bool group_ok =
      config.group_size == -1 ? linear.G == 1 : config.group_size == linear.group_size;
  if (!group_ok)
    throw Error(config.source + ": group_size " + std::to_string(config.group_size) +
                " disagrees with the tensors: " + linear.name + " has " + std::to_string(linear.G) +
                " groups of " + std::to_string(linear.group_size) + " rows");
  if (!config.desc_act && linear.act_order)
    throw Error(config.source + ": desc_act false disagrees with the tensors: " + linear.name +
                ".g_idx is an act-order assignment");
}

// Sorted packed row block b gathers original rows x_map[8b .. 8b+7], one nibble each.
std::vector<int32_t> repack_sorted(const std::vector<int32_t>& qweight,
                                   const std::vector<int32_t>& x_map, int K, int N) {
  std::vector<int32_t> sorted(qweight.size(), 0);
#pragma omp parallel for if (size_t(K) * N >= kParallelWork)
  for (int block = 0; block < K / 8; ++block) {
    uint32_t* out = reinterpret_cast<uint32_t*>(sorted.data()) + size_t(block) * N;
    for (int j = 0; j < 8; ++j) {
      const int row = x_map[block * 8 + j];
      const uint32_t* in = reinterpret_cast<const uint32_t*>(qweight.data()) + size_t(row / 8) * N;
      const int shift = 4 * (row % 8);
      for (int n = 0; n < N; ++n) out[n] |= ((in[n] >> shift) & 15u) << (4 * j);
    }
  }
  return sorted;
}

}  // namespace

std::vector<int32_t> act_order_permutation(const std::vector<int32_t>& g_idx, int G) {
  std::vector<int32_t> start(size_t(G) + 1, 0);
  for (int32_t g : g_idx) {
    if (g < 0 || g >= G)
      throw Error("act_order_permutation: g_idx value " + std::to_string(g) + " outside [0, " +
                  std::to_string(G) + ")");
    ++start[g + 1];
  }
  for (int g = 0; g < G; ++g) start[g + 1] += start[g];
  std::vector<int32_t> x_map(g_idx.size());
  for (size_t k = 0; k < g_idx.size(); ++k) x_map[start[g_idx[k]]++] = int32_t(k);
  return x_map;
}

GptqLinear load_gptq_linear(const TensorSet& tensors, const std::string& prefix, int K, int N,
                            const std::optional<QuantizationConfig>& quantization) {
  if (K <= 0 || N <= 0 || K % 8 != 0 || N % 8 != 0)
    throw Error(prefix + ": K " + std::to_string(K) + " and N " + std::to_string(N) +
                " must be positive multiples of 8 for 4-bit packing");
  const TensorView& qweight = tensors.get(prefix + ".qweight");
  const TensorView& qzeros = tensors.get(prefix + ".qzeros");
  const TensorView& scales = tensors.get(prefix + ".scales");
  check_qweight(qweight, K, N);
  expect_dtype(qzeros, DType::I32);
  expect_rank2(qzeros);
  const int64_t G = qzeros.shape[0];
  if (G <= 0 || G > K || K % G != 0)
    throw Error(subject(qzeros) + " has shape " + qzeros.shape_string() + ": " + std::to_string(G) +
                " groups do not divide K = " + std::to_string(K));
  expect_shape(qzeros, {G, N / 8});
  expect_rank2(scales);
  expect_shape(scales, {G, N});

  GptqLinear linear;
  linear.name = prefix;
  linear.K = K;
  linear.N = N;
  linear.G = int(G);
  linear.group_size = K / linear.G;
  linear.qweight = copy_i32(qweight);
  linear.qzeros = copy_i32(qzeros);
  linear.scales = scales_as_f16(scales);
  if (const TensorView* g_idx_tensor = tensors.find(prefix + ".g_idx")) {
    expect_dtype(*g_idx_tensor, DType::I32);
    expect_shape(*g_idx_tensor, {K});
    const std::vector<int32_t> g_idx = copy_i32(*g_idx_tensor);
    check_g_idx(*g_idx_tensor, g_idx, linear.G, linear.group_size);
    if (!is_sequential(g_idx, linear.group_size)) {
      linear.act_order = true;
      linear.x_map = act_order_permutation(g_idx, linear.G);
      linear.qweight = repack_sorted(linear.qweight, linear.x_map, K, N);
    }
  }
  linear.sym = true;
  for (int32_t word : linear.qzeros) linear.sym = linear.sym && uint32_t(word) == 0x77777777u;
  if (quantization) check_against_config(linear, *quantization, qweight);
  return linear;
}

std::vector<float> dequantize_gptq(const GptqLinear& linear) {
  const int K = linear.K, N = linear.N;
  std::vector<float> weight(size_t(N) * K);
#pragma omp parallel for if (size_t(K) * N >= kParallelWork)
  for (int n = 0; n < N; ++n) {
    float* row = weight.data() + size_t(n) * K;
    for (int s = 0; s < K; ++s) {
      const int g = s / linear.group_size;
      const float scale = half_to_float(linear.scales[size_t(g) * N + n]);
      const int original = linear.act_order ? linear.x_map[s] : s;
      row[original] = scale * float(linear.q_sorted(s, n) - linear.zero(g, n));
    }
  }
  return weight;
}

}  // namespace q4jit
