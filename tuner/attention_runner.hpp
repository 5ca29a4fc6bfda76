// Compiling, loading and launching the attention families (attention_prefill,
// attention_prefill_mma, attention_decode alone or fused with RoPE) on a Backend: what the
// attention tuner and GpuOps share, so that a candidate is timed exactly as the engine launches it.
// Each variant is compiled alone in its program, the request a load makes (KernelLoader::function),
// so the tuned choice is a kernel-store hit at the next load. Not here: the kernels and their
// legality (kernel_sources/attention_*.hpp), which one to run (attention_path.hpp), timing
// (measure.hpp).
#pragma once

#include <memory>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/attention_path.hpp"

namespace q4jit {

// The family and variant of a prefill kernel.
KernelFamily prefill_family(AttentionPrefillPath path);
KernelVariant prefill_variant(const PrefillChoice& choice);
KernelVariant decode_variant(const AttentionDecodeConfig& cfg);

// One loaded kernel.
struct AttentionKernel {
  std::shared_ptr<const LoadedModule> module;
  Function function;
};

// Compiles (store first, on `jobs` threads) and loads each variant of `family` alone; a variant
// that failed to compile or load is an Error in its slot.
std::vector<Result<AttentionKernel>> load_attention_kernels(
    Backend& backend, KernelService& service, const KernelFamily& family,
    const std::vector<KernelVariant>& variants, int jobs);

// Device addresses of one attention launch.
struct AttentionOperands {
  uint64_t out = 0;          // fp16 [T, out_stride] (decode: [H, D])
  uint64_t q = 0;            // fp16 [T, q_stride] (decode: [H, D])
  uint64_t key_cache = 0;    // fp16 [P, Hkv, D]
  uint64_t value_cache = 0;  // fp16 [P, Hkv, D]
};

// Enqueues `choice`'s kernel (`function`) on shape; scale = 1 / sqrt(D) for Llama.
void launch_attention_prefill(Backend& backend, const Function& function,
                              const PrefillChoice& choice, const AttentionPrefillShape& shape,
                              const AttentionOperands& operands, float scale, StreamView stream);

// Decode state of one launch: the workspace (counters zero before the first launch; every launch
// leaves them zero) and the length, read from device memory.
struct AttentionDecodeState {
  uint64_t workspace = 0;     // workspace(cfg, shape for the longest length).bytes
  uint64_t length = 0;        // int32: positions attended
  uint64_t out_position = 0;  // int32 [H * D] output order, or 0 for plain order
};

// Enqueues `cfg`'s kernel with `splits` blocks per head group (at least ceil(length / split)).
void launch_attention_decode(Backend& backend, const Function& function,
                             const AttentionDecodeConfig& cfg, const AttentionDecodeShape& shape,
                             int splits, const AttentionOperands& operands,
                             const AttentionDecodeState& state, float scale, StreamView stream);

// The new token of a fused decode launch (rope_variant: RoPE and the cache write in the launch).
struct AttentionDecodeRope {
  uint64_t k = 0;          // fp16 [Hkv, D], the token's key before RoPE (a view of the qkv output)
  uint64_t v = 0;          // fp16 [Hkv, D], its value
  uint64_t positions = 0;  // int32: positions[0], the token's position (= length - 1)
  int max_positions = 0;   // P_max, rows of the layer's cache: a position outside writes nothing
  float theta = 10000.0f;  // RoPE base
  float scale = 1.0f;      // linear RoPE scaling factor
};

// Enqueues `cfg`'s fused kernel (`function`, rope_variant(cfg)): operands.q is the token's queries
// before RoPE (read only); the caches get the rotated key and the value at rope.positions[0].
void launch_attention_decode_rope(Backend& backend, const Function& function,
                                  const AttentionDecodeConfig& cfg,
                                  const AttentionDecodeShape& shape, int splits,
                                  const AttentionOperands& operands,
                                  const AttentionDecodeState& state,
                                  const AttentionDecodeRope& rope, float scale, StreamView stream);

}  // namespace q4jit
