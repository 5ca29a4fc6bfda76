// A model's weights on the GPU, laid out for the kernels: GPTQ projections as loaded (rows sorted
// for act-order, x_map kept; identity g_idx never uploaded), projections that read the same input
// fused along N where their kernels allow it (q, k, v into qkv and gate, up into gate_up when
// group size and act-order permutation are equal), norms as fp16. Bytes are accounted so the
// engine can report VRAM. A model split over GPUs (gpu_split.hpp) uploads one part per split: a
// range of layers, with or without the embedding and the head. Not here: running them
// (gpu_engine.hpp), the KV cache.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/weights.hpp"
#include "runtime/backend.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

// One projection y = x W^T on the device, possibly several fused along N (their outputs side by
// side in each output row, in the order of `parts`).
struct DeviceLinear {
  std::string name;        // "layer 3 qkv"
  bool quantized = true;   // GPTQ; else dense fp16
  MatmulShapeKey shape;    // K, N (all parts), group size, act-order
  std::vector<int> parts;  // N of each fused part
  DeviceBuffer qweight;    // int32 [K/8, N]
  DeviceBuffer scales;     // fp16 [G, N]
  DeviceBuffer qzeros;     // int32 [G, N/8]
  DeviceBuffer x_map;      // int32 [K] sorted row -> original row (act-order only)
  DeviceBuffer sorted_of;  // int32 [K] original row -> sorted row (act-order only; dequantize)
  DeviceBuffer dense;      // fp16 [N, K] when !quantized
};

struct DeviceLayer {
  DeviceBuffer input_norm, post_norm;      // fp16 [C]
  std::vector<DeviceLinear> attention_in;  // {qkv} fused, or {q, k, v}
  DeviceLinear o;
  std::vector<DeviceLinear> mlp_in;  // {gate_up} fused, or {gate, up}
  DeviceLinear down;
  // down is act-order: gate and up's output columns were put in down's sorted row order at load,
  // so silu(gate) * up is down's input already sorted.
  bool down_input_sorted = false;
  // input_norm / post_norm in the sorted row order of the fused qkv / gate_up projection when it
  // is act-order (else empty): a fused decode step normalizes a row its producer wrote sorted.
  DeviceBuffer input_norm_sorted, post_norm_sorted;
};

struct DeviceModel {
  DeviceBuffer embed;       // fp16 [V, C]; empty in a part without the embedding
  DeviceBuffer lm_head;     // fp16 [V, C]; empty when tied to embed (a copy in a part without it)
  DeviceBuffer final_norm;  // fp16 [C]; empty in a part without the head
  std::vector<DeviceLayer> layers;  // the model's layers first_layer, first_layer + 1, ...
  int first_layer = 0;
  int64_t bytes = 0;  // every buffer above

  uint64_t lm_head_weight() const { return lm_head ? lm_head.raw() : embed.raw(); }
};

// Whether projections that can fuse should (MatmulChooser::fuse: the tuned decision at M = 1),
// given the fused shape and the parts' shapes as they run (act_order false, rows sorted).
using FusionDecision =
    std::function<bool(const MatmulShapeKey& fused, std::span<const MatmulShapeKey> parts)>;

// Which part of a model one device holds: layers [first_layer, end_layer) (end_layer < 0: to the
// last), the embedding table, the head (final norm and lm_head; a tied lm_head is copied from the
// embedding when the part lacks it).
struct ModelPart {
  int first_layer = 0;
  int end_layer = -1;
  bool embedding = true;
  bool head = true;
};

// Copies the part of the model to the current device of `backend`. progress(layer, layers) after
// each layer (counted within the part). q/k/v and gate/up are fused when can_fuse and `decide`
// (null: always) say so. Error (from the backend, naming the allocation) when the device runs
// out of memory.
DeviceModel upload_model(Backend& backend, const Model& model,
                         const std::function<void(int, int)>& progress = {},
                         const FusionDecision& decide = {}, const ModelPart& part = {});

// The bytes upload_model allocates for one layer, fusing where can_fuse allows (the default
// decision; a tuned decision against fusing adds an act-order x_map per unfused projection).
int64_t layer_device_bytes(const LayerWeights& layer);
// The bytes of one uploaded fp16 table or norm (at least 16: every buffer is).
int64_t device_buffer_bytes(size_t elements, size_t element_bytes);

// Whether these projections may run as one fused matmul (same K, quantization, group size and
// act-order permutation). Exposed for tests.
bool can_fuse(const std::vector<const Linear*>& linears);

}  // namespace q4jit
