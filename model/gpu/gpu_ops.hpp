// The forward pass's kernels other than the projections, each launched with the first legal
// configuration of its family for the shape (the family's default where legal), except attention
// where the tuner decided (set_attention_choice: the prefill path and configuration per row
// bucket, the decode split per length bucket; tuner/attention_path.hpp). Functions are loaded
// once per configuration. Shapes, layouts and argument orders are those of the families'
// descriptors in kernel_sources/. Not here: the projections (matmul_dispatch.hpp).
#pragma once

#include <map>
#include <string>

#include "kernel_sources/attention_decode.hpp"
#include "kernel_sources/attention_prefill.hpp"
#include "kernel_sources/rope_cache.hpp"
#include "model/gpu/kernel_loader.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/attention_runner.hpp"

namespace q4jit {

// How decode attention covers a length: blocks of `split` positions, `splits` of them per head
// group. A captured decode graph is valid for one plan.
struct DecodePlan {
  int split = 0;
  int splits = 0;
  auto operator<=>(const DecodePlan&) const = default;
};

class GpuOps {
 public:
  explicit GpuOps(KernelLoader& loader);

  // out[T, C] = table[tokens]; ids outside [0, V) give zero rows and count in bad_tokens.
  void embedding(uint64_t out, uint64_t table, uint64_t tokens, int T, int V, int C,
                 uint64_t bad_tokens, StreamView stream);
  // x += delta (unless delta is 0), then out = rms_norm(x) with out[j] taken from x[order[j]]
  // (unless order is 0): the residual add, the next norm and the next projection's act-order
  // gather in one launch.
  void add_rms_norm(uint64_t out, uint64_t x, uint64_t delta, uint64_t weight, uint64_t order,
                    int rows, int C, float eps, StreamView stream);
  // RoPE on q in place, rotated k and v into one layer's cache at positions[0..T).
  void rope_cache(const RopeCacheShape& shape, uint64_t q, uint64_t k, uint64_t v,
                  uint64_t key_cache, uint64_t value_cache, uint64_t positions, float theta,
                  float scale, StreamView stream);

  // The tuned attention kernels (tuner/attention_path_choice.hpp reads them from the database).
  // Buckets without an entry, or whose entry is not legal for the shape at hand, keep the rules
  // below; an empty choice (the default) is exactly the untuned behaviour.
  // Loads every kernel the choice names now, so none compiles in the middle of a request.
  void set_attention_choice(AttentionChoice choice);
  const AttentionChoice& attention_choice() const { return attention_choice_; }

  // Decode attention is built for up to `max_length` positions; the actual length is read from
  // device memory (length_in), and the plan's blocks cover at least that length. Loads the kernel
  // of every split size, unfused and fused with RoPE: a generation that grows into another split
  // compiles nothing.
  void set_decode_limits(int heads, int kv_heads, int head_dim, int max_length);
  // The decided split of the length's bucket, else the smallest split whose blocks stay within 4
  // per SM: short contexts still spread over the GPU (a block per head would leave most SMs
  // idle), long ones combine few partials. The number of splits is rounded up to a power of two
  // (within the workspace): a decode graph is captured per plan, and blocks past the length add
  // nothing, so a generation re-captures when the count doubles rather than every split.
  DecodePlan decode_plan(int length) const;
  int64_t decode_workspace_bytes() const;
  void attention_decode(uint64_t out, uint64_t q, uint64_t key_cache, uint64_t value_cache,
                        uint64_t workspace, uint64_t length_in, const DecodePlan& plan, float scale,
                        uint64_t out_position, StreamView stream);
  // attention_decode with the new token's rope_cache in the same launch, so that a decode step
  // (one row) runs no rope_cache. q is the token's queries before RoPE, read only (nothing after
  // attention reads them); rope.k and rope.v its key and value rows of the qkv output (one row, so
  // their strides do not matter) and rope.positions[0] its position, length - 1 (the same device
  // inputs a captured graph updates). The caches get the rotated key and the value at that
  // position, as rope_cache writes them (nothing outside [0, rope.max_positions)); out gets the
  // bits of rope_cache then attention_decode with the same plan. Plan, workspace and
  // out_position as for attention_decode, whose kernels set_decode_limits loads beside these.
  void attention_decode_rope(uint64_t out, uint64_t q, uint64_t key_cache, uint64_t value_cache,
                             uint64_t workspace, uint64_t length_in, const DecodePlan& plan,
                             float scale, uint64_t out_position, const AttentionDecodeRope& rope,
                             StreamView stream);
  // The decided path and configuration of T's bucket, else tensor cores where that family runs
  // (NVIDIA sm_80+, D 64 or 128), else the SIMT kernel.
  void attention_prefill(const AttentionPrefillShape& shape, uint64_t out, uint64_t q,
                         uint64_t key_cache, uint64_t value_cache, float scale, StreamView stream);
  // The kernel attention_prefill runs for `shape` (what it would launch; for tests and logs).
  PrefillChoice prefill_choice(const AttentionPrefillShape& shape) const;

  // out[rows, F] = silu(gate) * up, gate and up rows `stride` elements apart.
  void silu_mul(uint64_t out, uint64_t gate, uint64_t up, int rows, int F, int stride,
                StreamView stream);
  // fp32 logits[rows, V] = x[rows, C] W^T, W fp16 [V, C].
  void lm_head(uint64_t logits, uint64_t x, uint64_t weight, int rows, int C, int V,
               StreamView stream);
  // step[0] = the argmax of fp32 logits[V] (the Sampler's tie order), step[1] and step[2] (a
  // decode step's position and length) one further: the next greedy step's inputs, on the device.
  void greedy_token(uint64_t step, uint64_t logits, int V, StreamView stream);

 private:
  const Function& function(const KernelFamily& family, const std::string& config,
                           const std::string& name_expression);
  const DeviceInfo& device() const { return loader_.backend().current_device(); }

  KernelLoader& loader_;
  std::map<std::string, Function> functions_;            // "family|config"
  std::map<int, AttentionDecodeConfig> decode_configs_;  // by split size
  AttentionDecodeShape decode_shape_;
  AttentionChoice attention_choice_;
};

}  // namespace q4jit
