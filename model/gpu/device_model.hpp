// A model's weights on the GPU, laid out for the kernels: GPTQ projections as loaded (rows sorted
// for act-order, x_map kept; identity g_idx never uploaded), projections that read the same input
// fused along N where their kernels allow it (q, k, v into qkv and gate, up into gate_up when
// group size and act-order permutation are equal), norms as fp16. Bytes are accounted so the
// engine can report VRAM. Not here: running them (gpu_engine.hpp), the KV cache.
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
};

struct DeviceModel {
  DeviceBuffer embed;       // fp16 [V, C]
  DeviceBuffer lm_head;     // fp16 [V, C]; empty when tied to embed
  DeviceBuffer final_norm;  // fp16 [C]
  std::vector<DeviceLayer> layers;
  int64_t bytes = 0;  // every buffer above

  uint64_t lm_head_weight() const { return lm_head ? lm_head.raw() : embed.raw(); }
};

// Whether projections that can fuse should (MatmulChooser::fuse: the tuned decision at M = 1),
// given the fused shape and the parts' shapes as they run (act_order false, rows sorted).
using FusionDecision =
    std::function<bool(const MatmulShapeKey& fused, std::span<const MatmulShapeKey> parts)>;

// Copies the model to the current device of `backend`. progress(layer, layers) after each layer.
// q/k/v and gate/up are fused when can_fuse and `decide` (null: always) say so. Error (from the
// backend, naming the allocation) when the device runs out of memory.
DeviceModel upload_model(Backend& backend, const Model& model,
                         const std::function<void(int, int)>& progress = {},
                         const FusionDecision& decide = {});

// Whether these projections may run as one fused matmul (same K, quantization, group size and
// act-order permutation). Exposed for tests.
bool can_fuse(const std::vector<const Linear*>& linears);

}  // namespace q4jit
