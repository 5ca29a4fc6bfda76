// Distinct matmul shapes of a GPTQ model (model_shapes.hpp).
#include "tuner/model_shapes.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>

#include "common/error.hpp"
#include "model/config.hpp"
#include "model/safetensors.hpp"

namespace q4jit {

namespace {

struct Projection {
  MatmulShapeKey shape;
  std::vector<int32_t> g_idx;  // empty when sequential (not act-order)
};

// g_idx copied with memcpy (safetensors does not align tensors); empty when absent or sequential.
std::vector<int32_t> read_g_idx(const TensorSet& tensors, const std::string& prefix, int64_t K,
                                int64_t group_size) {
  const TensorView* tensor = tensors.find(prefix + ".g_idx");
  if (tensor == nullptr) return {};
  expect_dtype(*tensor, DType::I32);
  expect_shape(*tensor, {K});
  std::vector<int32_t> g_idx(static_cast<size_t>(K));
  std::memcpy(g_idx.data(), tensor->bytes.data(), g_idx.size() * 4);
  for (int64_t k = 0; k < K; ++k) {
    if (g_idx[size_t(k)] != k / group_size) return g_idx;
  }
  return {};
}

Projection read_projection(const TensorSet& tensors, const std::string& prefix, int64_t K,
                           int64_t N) {
  const TensorView& scales = tensors.get(prefix + ".scales");
  if (scales.shape.size() != 2 || scales.shape[0] <= 0 || K % scales.shape[0] != 0) {
    throw Error(tensors.source().string() + ": tensor '" + prefix + ".scales' has shape " +
                scales.shape_string() + ", expected [G, " + std::to_string(N) +
                "] with G dividing " + std::to_string(K));
  }
  Projection projection;
  projection.shape.K = K;
  projection.shape.N = N;
  projection.shape.group_size = K / scales.shape[0];
  projection.g_idx = read_g_idx(tensors, prefix, K, projection.shape.group_size);
  projection.shape.act_order = !projection.g_idx.empty();
  return projection;
}

using ShapeTuple = std::tuple<int64_t, int64_t, int64_t, bool>;

// The fused shape of projections sharing K, group size and permutation; nullopt otherwise.
std::optional<MatmulShapeKey> fused(const std::vector<const Projection*>& parts) {
  MatmulShapeKey shape = parts.front()->shape;
  shape.N = 0;
  for (const Projection* part : parts) {
    if (part->shape.K != shape.K || part->shape.group_size != shape.group_size ||
        part->g_idx != parts.front()->g_idx) {
      return std::nullopt;
    }
    shape.N += part->shape.N;
  }
  return shape;
}

}  // namespace

std::vector<TuneShape> model_matmul_shapes(const std::filesystem::path& dir) {
  const LlamaConfig config = load_config(dir);
  if (!config.quantization) throw Error(dir.string() + ": not a GPTQ model: nothing to tune");
  const TensorSet tensors = TensorSet::open_folder(dir);
  const int64_t hidden = config.hidden_size, intermediate = config.intermediate_size;
  const int64_t q_out = int64_t(config.num_attention_heads) * config.head_dim;
  const int64_t kv_out = int64_t(config.num_key_value_heads) * config.head_dim;
  std::map<ShapeTuple, std::vector<std::string>> names;
  // Keyed with act_order false: the engine multiplies act-order weights as their sorted rows
  // with x sorted to match (MatmulDispatch::run_shape), the same problem as a plain model's.
  auto add = [&](const MatmulShapeKey& shape, const std::string& name) {
    auto& list = names[{shape.K, shape.N, shape.group_size, false}];
    if (std::find(list.begin(), list.end(), name) == list.end()) list.push_back(name);
  };
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    const std::string base = "model.layers." + std::to_string(layer) + ".";
    const Projection q = read_projection(tensors, base + "self_attn.q_proj", hidden, q_out);
    const Projection k = read_projection(tensors, base + "self_attn.k_proj", hidden, kv_out);
    const Projection v = read_projection(tensors, base + "self_attn.v_proj", hidden, kv_out);
    const Projection o = read_projection(tensors, base + "self_attn.o_proj", q_out, hidden);
    const Projection gate = read_projection(tensors, base + "mlp.gate_proj", hidden, intermediate);
    const Projection up = read_projection(tensors, base + "mlp.up_proj", hidden, intermediate);
    const Projection down = read_projection(tensors, base + "mlp.down_proj", intermediate, hidden);
    for (const auto& [projection, name] : {std::pair{&q, "q"},
                                           {&k, "k"},
                                           {&v, "v"},
                                           {&o, "o"},
                                           {&gate, "gate"},
                                           {&up, "up"},
                                           {&down, "down"}}) {
      add(projection->shape, name);
    }
    if (const auto qkv = fused({&q, &k, &v})) add(*qkv, "qkv");
    if (const auto gate_up = fused({&gate, &up})) add(*gate_up, "gate_up");
  }
  std::vector<TuneShape> shapes;
  for (const auto& [tuple, list] : names) {
    TuneShape shape;
    shape.shape = {std::get<0>(tuple), std::get<1>(tuple), std::get<2>(tuple), std::get<3>(tuple)};
    for (const std::string& name : list)
      shape.projections += (shape.projections.empty() ? "" : ",") + name;
    shapes.push_back(shape);
  }
  return shapes;
}

}  // namespace q4jit
