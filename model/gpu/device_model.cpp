// Uploading a model's weights to the device, with fusion (device_model.hpp).
#include "model/gpu/device_model.hpp"

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

// {fused} when the projections can fuse, else one DeviceLinear each.
std::vector<DeviceLinear> upload_group(Backend& backend, const std::vector<const Linear*>& linears,
                                       const std::string& layer, const std::string& fused_name,
                                       int64_t& bytes) {
  std::vector<DeviceLinear> out;
  if (can_fuse(linears)) {
    out.push_back(upload_linear(backend, linears, layer + fused_name, bytes));
    return out;
  }
  for (const Linear* linear : linears)
    out.push_back(upload_linear(backend, {linear}, linear->name, bytes));
  return out;
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
                         const std::function<void(int, int)>& progress) {
  DeviceModel device;
  const ModelWeights& weights = model.weights;
  device.embed = upload(backend, weights.embed, device.bytes);
  if (!weights.lm_head.empty()) device.lm_head = upload(backend, weights.lm_head, device.bytes);
  device.final_norm = upload_norm(backend, weights.final_norm, device.bytes);
  const int layers = static_cast<int>(weights.layers.size());
  for (int l = 0; l < layers; ++l) {
    const LayerWeights& w = weights.layers[l];
    const std::string name = "layer " + std::to_string(l) + " ";
    DeviceLayer layer;
    layer.input_norm = upload_norm(backend, w.input_norm, device.bytes);
    layer.post_norm = upload_norm(backend, w.post_norm, device.bytes);
    layer.attention_in = upload_group(backend, {&w.q, &w.k, &w.v}, name, "qkv", device.bytes);
    layer.o = upload_linear(backend, {&w.o}, w.o.name, device.bytes);
    layer.mlp_in = upload_group(backend, {&w.gate, &w.up}, name, "gate_up", device.bytes);
    layer.down = upload_linear(backend, {&w.down}, w.down.name, device.bytes);
    device.layers.push_back(std::move(layer));
    if (progress) progress(l + 1, layers);
  }
  backend.synchronize({});
  return device;
}

}  // namespace q4jit
