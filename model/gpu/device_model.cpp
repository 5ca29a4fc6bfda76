// Uploading a model's weights to the device, with fusion (device_model.hpp).
#include "model/gpu/device_model.hpp"

#include <algorithm>

#include "common/half.hpp"
#include "kernel_sources/dequantize_q4.hpp"

namespace q4jit {

namespace {

template <typename T>
DeviceBuffer upload(Backend& backend, const std::vector<T>& host, int64_t& bytes) {
  const size_t size = std::max<size_t>(host.size() * sizeof(T), 16);
  DeviceBuffer buffer = backend.allocate(size);
  if (!host.empty()) backend.copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
  bytes += static_cast<int64_t>(size);
  return buffer;
}

DeviceBuffer upload_norm(Backend& backend, const std::vector<float>& weight, int64_t& bytes) {
  std::vector<uint16_t> halves(weight.size());
  for (size_t i = 0; i < weight.size(); ++i) halves[i] = float_to_half(weight[i]);
  return upload(backend, halves, bytes);
}

// The norm weight in the sorted row order of the one projection that reads the normalized row
// (x_map: sorted row -> original), when that projection is act-order; else nothing.
DeviceBuffer upload_sorted_norm(Backend& backend, const std::vector<float>& weight,
                                const std::vector<DeviceLinear>& readers, const Linear& reader,
                                int64_t& bytes) {
  if (readers.size() != 1 || !reader.gptq || !reader.gptq->act_order) return {};
  const std::vector<int32_t>& x_map = reader.gptq->x_map;
  std::vector<float> sorted(x_map.size());
  for (size_t i = 0; i < x_map.size(); ++i) sorted[i] = weight[size_t(x_map[i])];
  return upload_norm(backend, sorted, bytes);
}

// Row-major matrices of `rows` rows side by side: row r of the result is row r of each part.
template <typename T>
std::vector<T> concat_columns(const std::vector<const std::vector<T>*>& parts, size_t rows) {
  size_t width = 0;
  for (const auto* part : parts) width += part->size() / rows;
  std::vector<T> out(rows * width);
  for (size_t r = 0; r < rows; ++r) {
    T* to = out.data() + r * width;
    for (const auto* part : parts) {
      const size_t w = part->size() / rows;
      std::copy_n(part->data() + r * w, w, to);
      to += w;
    }
  }
  return out;
}

DeviceLinear upload_linear(Backend& backend, const std::vector<const Linear*>& linears,
                           const std::string& name, int64_t& bytes) {
  DeviceLinear device;
  device.name = name;
  device.shape.K = linears.front()->K;
  for (const Linear* linear : linears) {
    device.parts.push_back(linear->N);
    device.shape.N += linear->N;
  }
  if (!linears.front()->gptq) {
    device.quantized = false;
    std::vector<uint16_t> dense;  // [N, K]: parts stack along rows
    for (const Linear* linear : linears)
      dense.insert(dense.end(), linear->dense.begin(), linear->dense.end());
    device.dense = upload(backend, dense, bytes);
    return device;
  }
  const GptqLinear& first = *linears.front()->gptq;
  device.shape.group_size = first.group_size;
  device.shape.act_order = first.act_order;
  std::vector<const std::vector<int32_t>*> qweights, qzeros;
  std::vector<const std::vector<uint16_t>*> scales;
  for (const Linear* linear : linears) {
    qweights.push_back(&linear->gptq->qweight);
    qzeros.push_back(&linear->gptq->qzeros);
    scales.push_back(&linear->gptq->scales);
  }
  device.qweight = upload(backend, concat_columns(qweights, size_t(first.K / 8)), bytes);
  device.scales = upload(backend, concat_columns(scales, size_t(first.G)), bytes);
  device.qzeros = upload(backend, concat_columns(qzeros, size_t(first.G)), bytes);
  if (first.act_order) {
    device.x_map = upload(backend, first.x_map, bytes);
    device.sorted_of = upload(backend, sorted_row_of(first.x_map), bytes);
  }
  return device;
}

// `linear` with output column j taken from column order[j]. For gate and up with down's act-order
// x_map, their product comes out in the order down's sorted rows read it: neither SiLU nor down
// gathers (MatmulDispatch::run with x_sorted).
Linear with_columns_in_order(const Linear& linear, const std::vector<int32_t>& order) {
  Linear out = linear;
  const size_t N = size_t(linear.N), K = size_t(linear.K);
  if (!linear.gptq) {
    for (size_t j = 0; j < N; ++j)
      std::copy_n(linear.dense.begin() + ptrdiff_t(size_t(order[j]) * K), K,
                  out.dense.begin() + ptrdiff_t(j * K));
    return out;
  }
  const GptqLinear& from = *linear.gptq;
  GptqLinear& to = *out.gptq;
  for (size_t r = 0; r < K / 8; ++r)
    for (size_t j = 0; j < N; ++j) to.qweight[r * N + j] = from.qweight[r * N + size_t(order[j])];
  for (size_t g = 0; g < size_t(from.G); ++g) {
    for (size_t j = 0; j < N; ++j) {
      const size_t n = size_t(order[j]);
      to.scales[g * N + j] = from.scales[g * N + n];
      const uint32_t zero = (uint32_t(from.qzeros[g * N / 8 + n / 8]) >> (4 * (n % 8))) & 15u;
      uint32_t& word = reinterpret_cast<uint32_t&>(to.qzeros[g * N / 8 + j / 8]);
      word = (word & ~(15u << (4 * (j % 8)))) | (zero << (4 * (j % 8)));
    }
  }
  return out;
}

// The shape a GPTQ projection runs as (MatmulDispatch::run_shape: act-order rows sorted).
MatmulShapeKey run_shape(const Linear& linear, int64_t N) {
  return {linear.K, N, linear.gptq->group_size, false};
}

// Whether the tuned decision (if any) keeps these projections fused.
bool fusion_pays(const std::vector<const Linear*>& linears, const FusionDecision& decide) {
  if (!decide || !linears.front()->gptq) return true;
  std::vector<MatmulShapeKey> parts;
  int64_t N = 0;
  for (const Linear* linear : linears) {
    parts.push_back(run_shape(*linear, linear->N));
    N += linear->N;
  }
  return decide(run_shape(*linears.front(), N), parts);
}

// {fused} when the projections can fuse and fusing pays, else one DeviceLinear each.
std::vector<DeviceLinear> upload_group(Backend& backend, const std::vector<const Linear*>& linears,
                                       const std::string& layer, const std::string& fused_name,
                                       const FusionDecision& decide, int64_t& bytes) {
  std::vector<DeviceLinear> out;
  if (can_fuse(linears) && fusion_pays(linears, decide)) {
    out.push_back(upload_linear(backend, linears, layer + fused_name, bytes));
    return out;
  }
  for (const Linear* linear : linears)
    out.push_back(upload_linear(backend, {linear}, linear->name, bytes));
  return out;
}

DeviceLayer upload_layer(Backend& backend, const LayerWeights& w, int l,
                         const FusionDecision& decide, int64_t& bytes) {
  const std::string name = "layer " + std::to_string(l) + " ";
  DeviceLayer layer;
  layer.input_norm = upload_norm(backend, w.input_norm, bytes);
  layer.post_norm = upload_norm(backend, w.post_norm, bytes);
  layer.attention_in = upload_group(backend, {&w.q, &w.k, &w.v}, name, "qkv", decide, bytes);
  layer.o = upload_linear(backend, {&w.o}, w.o.name, bytes);
  const GptqLinear* down = w.down.gptq ? &*w.down.gptq : nullptr;
  layer.down_input_sorted = down != nullptr && down->act_order;
  if (layer.down_input_sorted) {
    const Linear gate = with_columns_in_order(w.gate, down->x_map);
    const Linear up = with_columns_in_order(w.up, down->x_map);
    layer.mlp_in = upload_group(backend, {&gate, &up}, name, "gate_up", decide, bytes);
  } else {
    layer.mlp_in = upload_group(backend, {&w.gate, &w.up}, name, "gate_up", decide, bytes);
  }
  layer.down = upload_linear(backend, {&w.down}, w.down.name, bytes);
  layer.input_norm_sorted =
      upload_sorted_norm(backend, w.input_norm, layer.attention_in, w.q, bytes);
  layer.post_norm_sorted = upload_sorted_norm(backend, w.post_norm, layer.mlp_in, w.gate, bytes);
  return layer;
}

// What upload_linear allocates for these projections fused into one.
int64_t linear_device_bytes(const std::vector<const Linear*>& linears) {
  int64_t bytes = 0;
  if (!linears.front()->gptq) {
    size_t elements = 0;
    for (const Linear* linear : linears) elements += linear->dense.size();
    return device_buffer_bytes(elements, 2);
  }
  size_t qweight = 0, scales = 0, qzeros = 0;
  for (const Linear* linear : linears) {
    qweight += linear->gptq->qweight.size();
    scales += linear->gptq->scales.size();
    qzeros += linear->gptq->qzeros.size();
  }
  bytes += device_buffer_bytes(qweight, 4) + device_buffer_bytes(scales, 2) +
           device_buffer_bytes(qzeros, 4);
  const GptqLinear& first = *linears.front()->gptq;
  if (first.act_order) bytes += 2 * device_buffer_bytes(first.x_map.size(), 4);
  return bytes;
}

}  // namespace

bool can_fuse(const std::vector<const Linear*>& linears) {
  const Linear& first = *linears.front();
  for (const Linear* linear : linears) {
    if (linear->K != first.K || linear->gptq.has_value() != first.gptq.has_value()) return false;
    if (!first.gptq) continue;
    const GptqLinear& a = *first.gptq;
    const GptqLinear& b = *linear->gptq;
    if (a.group_size != b.group_size || a.act_order != b.act_order || a.x_map != b.x_map)
      return false;
  }
  return true;
}

DeviceModel upload_model(Backend& backend, const Model& model,
                         const std::function<void(int, int)>& progress,
                         const FusionDecision& decide, const ModelPart& part) {
  DeviceModel device;
  const ModelWeights& weights = model.weights;
  const int all = static_cast<int>(weights.layers.size());
  const int end = part.end_layer < 0 ? all : std::min(part.end_layer, all);
  device.first_layer = std::clamp(part.first_layer, 0, end);
  if (part.embedding) device.embed = upload(backend, weights.embed, device.bytes);
  if (part.head) {
    const bool copy_tied = weights.lm_head.empty() && !part.embedding;
    if (!weights.lm_head.empty() || copy_tied)
      device.lm_head = upload(backend, copy_tied ? weights.embed : weights.lm_head, device.bytes);
    device.final_norm = upload_norm(backend, weights.final_norm, device.bytes);
  }
  const int layers = end - device.first_layer;
  for (int l = device.first_layer; l < end; ++l) {
    device.layers.push_back(upload_layer(backend, weights.layers[l], l, decide, device.bytes));
    if (progress) progress(l - device.first_layer + 1, layers);
  }
  backend.synchronize({});
  return device;
}

int64_t device_buffer_bytes(size_t elements, size_t element_bytes) {
  return static_cast<int64_t>(std::max<size_t>(elements * element_bytes, 16));
}

int64_t layer_device_bytes(const LayerWeights& layer) {
  int64_t bytes = 2 * device_buffer_bytes(layer.input_norm.size(), 2);
  for (const auto& group : std::vector<std::vector<const Linear*>>{
           {&layer.q, &layer.k, &layer.v}, {&layer.o}, {&layer.gate, &layer.up}, {&layer.down}}) {
    if (can_fuse(group)) {
      bytes += linear_device_bytes(group);
      // A fused act-order reader of a norm: the norm weight again, sorted (upload_sorted_norm).
      const Linear& first = *group.front();
      if (&first != &layer.o && &first != &layer.down && first.gptq && first.gptq->act_order)
        bytes += device_buffer_bytes(layer.input_norm.size(), 2);
      continue;
    }
    for (const Linear* linear : group) bytes += linear_device_bytes({linear});
  }
  return bytes;
}

}  // namespace q4jit
