// Launching the non-projection kernels of the forward pass (gpu_ops.hpp).
#include "model/gpu/gpu_ops.hpp"

#include <algorithm>
#include <bit>

#include "kernel_sources/elementwise.hpp"
#include "kernel_sources/embedding.hpp"
#include "kernel_sources/greedy_token.hpp"
#include "kernel_sources/lm_head.hpp"
#include "kernel_sources/rms_norm.hpp"
#include "tuner/attention_runner.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

namespace {

template <typename Configs>
auto first_legal(const Configs& configs, const std::string& what) {
  Q4JIT_CHECK(!configs.empty(), what + ": no kernel configuration is legal for this shape");
  return configs.front();
}

}  // namespace

GpuOps::GpuOps(KernelLoader& loader) : loader_(loader) {}

const Function& GpuOps::function(const KernelFamily& family, const std::string& config,
                                 const std::string& name_expression) {
  const std::string key = family.name + "|" + config;
  if (auto found = functions_.find(key); found != functions_.end()) return found->second;
  const Function& loaded = loader_.function(family, {config, name_expression});
  return functions_.emplace(key, loaded).first->second;
}

void GpuOps::embedding(uint64_t out, uint64_t table, uint64_t tokens, int T, int V, int C,
                       uint64_t bad_tokens, StreamView stream) {
  const EmbeddingShape shape{T, V, C};
  const EmbeddingConfig cfg = first_legal(space(device(), shape), "embedding");
  const EmbeddingGeometry g = geometry(cfg, shape);
  launch_kernel(
      loader_.backend(), function(embedding_family(), to_string(cfg), name_expression(cfg)),
      launch_geometry(g.grid_x, 1, g.block_x), stream, out, table, tokens, V, C, bad_tokens);
}

void GpuOps::add_rms_norm(uint64_t out, uint64_t x, uint64_t delta, uint64_t weight, uint64_t order,
                          int rows, int C, float eps, StreamView stream) {
  const RmsNormShape shape{rows, C};
  RmsNormConfig cfg = first_legal(space(device(), shape), "rms_norm");
  cfg.stage_row = true;  // the add's result is kept for the gathered pass
  // A row is one block: at decode (one row) a 256-thread block left the gathered pass waiting
  // on 16 load latencies per thread. One 8-wide vector per thread, 128 to 1024 threads.
  cfg.block_threads = int(std::clamp<int64_t>(std::bit_ceil(uint64_t(C) / 8), 128, 1024));
  Q4JIT_CHECK(legal(cfg, device(), shape),
              "add_rms_norm: hidden size " + std::to_string(C) + " has no legal configuration");
  const RmsNormGeometry g = geometry(cfg, shape);
  launch_kernel(loader_.backend(),
                function(rms_norm_family(), to_string(cfg) + ".add", add_name_expression(cfg)),
                launch_geometry(g.grid_x, 1, g.block_x, g.dynamic_smem_bytes), stream, out, x,
                delta, weight, order, C, eps);
}

void GpuOps::rope_cache(const RopeCacheShape& shape, uint64_t q, uint64_t k, uint64_t v,
                        uint64_t key_cache, uint64_t value_cache, uint64_t positions, float theta,
                        float scale, StreamView stream) {
  const RopeCacheConfig cfg = first_legal(space(device(), shape), "rope_cache");
  const RopeCacheGeometry g = geometry(cfg, shape);
  const int q_stride = int(shape.q_stride ? shape.q_stride : shape.heads * shape.head_dim);
  const int kv_width = int(shape.kv_heads * shape.head_dim);
  const int k_stride = int(shape.k_stride ? shape.k_stride : kv_width);
  const int v_stride = int(shape.v_stride ? shape.v_stride : kv_width);
  launch_kernel(loader_.backend(),
                function(rope_cache_family(), to_string(cfg), name_expression(cfg)),
                launch_geometry(g.grid_x, g.grid_y, g.block_x), stream, q, q_stride, k, k_stride, v,
                v_stride, key_cache, value_cache, positions, int(shape.max_positions),
                int(shape.heads), int(shape.kv_heads), int(shape.head_dim), theta, scale);
}

void GpuOps::set_decode_limits(int heads, int kv_heads, int head_dim, int max_length) {
  decode_shape_ = {heads, kv_heads, head_dim, max_length};
  decode_configs_ = decode_split_configs(device(), decode_shape_);
  Q4JIT_CHECK(!decode_configs_.empty(),
              "attention_decode: no kernel configuration is legal for this shape");
  for (const auto& [split, cfg] : decode_configs_) {
    function(attention_decode_family(), to_string(cfg), name_expression(cfg));
    const KernelVariant fused = rope_variant(cfg);
    function(attention_decode_family(), fused.config, fused.name_expression);
  }
}

void GpuOps::set_attention_choice(AttentionChoice choice) {
  attention_choice_ = std::move(choice);
  for (const auto& [bucket, prefill] : attention_choice_.prefill) {
    if (!prefill.legal(device(), {bucket, 0, decode_shape_.heads, decode_shape_.kv_heads,
                                  decode_shape_.head_dim, 0, 0}))
      continue;
    const KernelVariant variant = prefill_variant(prefill);
    function(prefill_family(prefill.path), variant.config, variant.name_expression);
  }
}

DecodePlan GpuOps::decode_plan(int length) const {
  int split = 0;
  const auto decided = attention_choice_.decode_split.find(m_bucket(std::max(length, 1)));
  if (decided != attention_choice_.decode_split.end() && decode_configs_.count(decided->second))
    split = decided->second;
  if (split == 0)
    split = default_decode_split(decode_configs_, decode_shape_.heads, device().sm_count, length);
  if (split == 0) return {};  // set_decode_limits not called: no configuration yet
  const int needed = int((length + split - 1) / split);
  const int most = int((decode_shape_.length + split - 1) / split);
  return {split, std::max(needed, std::min(int(std::bit_ceil(unsigned(needed))), most))};
}

int64_t GpuOps::decode_workspace_bytes() const {
  int64_t bytes = 0;
  for (const auto& [split, cfg] : decode_configs_)
    bytes = std::max(bytes, workspace(cfg, decode_shape_).bytes);
  return bytes;
}

void GpuOps::attention_decode(uint64_t out, uint64_t q, uint64_t key_cache, uint64_t value_cache,
                              uint64_t workspace_address, uint64_t length_in,
                              const DecodePlan& plan, float scale, uint64_t out_position,
                              StreamView stream) {
  const AttentionDecodeConfig& cfg = decode_configs_.at(plan.split);
  launch_attention_decode(loader_.backend(),
                          function(attention_decode_family(), to_string(cfg), name_expression(cfg)),
                          cfg, decode_shape_, plan.splits, {out, q, key_cache, value_cache},
                          {workspace_address, length_in, out_position}, scale, stream);
}

void GpuOps::attention_decode_rope(uint64_t out, uint64_t q, uint64_t key_cache,
                                   uint64_t value_cache, uint64_t workspace_address,
                                   uint64_t length_in, const DecodePlan& plan, float scale,
                                   uint64_t out_position, const AttentionDecodeRope& rope,
                                   StreamView stream) {
  // Without them the kernel would attend to a cache row nobody wrote.
  Q4JIT_CHECK(rope.k != 0 && rope.v != 0 && rope.positions != 0 && rope.max_positions > 0,
              "attention_decode_rope: the new token's k, v, positions and max_positions are "
              "required");
  const AttentionDecodeConfig& cfg = decode_configs_.at(plan.split);
  const KernelVariant fused = rope_variant(cfg);
  launch_attention_decode_rope(
      loader_.backend(), function(attention_decode_family(), fused.config, fused.name_expression),
      cfg, decode_shape_, plan.splits, {out, q, key_cache, value_cache},
      {workspace_address, length_in, out_position}, rope, scale, stream);
}

PrefillChoice GpuOps::prefill_choice(const AttentionPrefillShape& shape) const {
  const auto decided = attention_choice_.prefill.find(m_bucket(std::max<int64_t>(shape.tokens, 1)));
  if (decided != attention_choice_.prefill.end() && decided->second.legal(device(), shape))
    return decided->second;
  const std::optional<PrefillChoice> fallback = default_prefill(device(), shape);
  Q4JIT_CHECK(fallback.has_value(),
              "attention_prefill: no kernel configuration is legal for this shape");
  return *fallback;
}

void GpuOps::attention_prefill(const AttentionPrefillShape& shape, uint64_t out, uint64_t q,
                               uint64_t key_cache, uint64_t value_cache, float scale,
                               StreamView stream) {
  const PrefillChoice choice = prefill_choice(shape);
  const KernelVariant variant = prefill_variant(choice);
  launch_attention_prefill(
      loader_.backend(),
      function(prefill_family(choice.path), variant.config, variant.name_expression), choice, shape,
      {out, q, key_cache, value_cache}, scale, stream);
}

void GpuOps::silu_mul(uint64_t out, uint64_t gate, uint64_t up, int rows, int F, int stride,
                      StreamView stream) {
  const ElementwiseShape shape{rows, F, stride, stride};
  const ElementwiseConfig cfg =
      first_legal(space(ElementwiseOp::silu_mul, device(), shape), "silu_mul");
  const ElementwiseGeometry g = geometry(ElementwiseOp::silu_mul, cfg, shape);
  launch_kernel(
      loader_.backend(),
      function(silu_mul_family(), to_string(cfg), name_expression(ElementwiseOp::silu_mul, cfg)),
      launch_geometry(g.grid_x, g.grid_y, g.block_x), stream, out, gate, stride, up, stride, F);
}

void GpuOps::lm_head(uint64_t logits, uint64_t x, uint64_t weight, int rows, int C, int V,
                     StreamView stream) {
  const LmHeadShape shape{rows, C, V};
  const LmHeadConfig cfg = first_legal(space(device(), shape, true), "lm_head");
  const LmHeadGeometry g = geometry(cfg, shape);
  launch_kernel(loader_.backend(), function(lm_head_family(), to_string(cfg), name_expression(cfg)),
                launch_geometry(g.grid_x, g.grid_y, g.block_x), stream, logits, x, weight, rows, C,
                V);
}

void GpuOps::greedy_token(uint64_t step, uint64_t logits, int V, StreamView stream) {
  const GreedyTokenConfig cfg = first_legal(space(device(), V), "greedy_token");
  launch_kernel(loader_.backend(),
                function(greedy_token_family(), to_string(cfg), name_expression(cfg)),
                launch_geometry(1, 1, unsigned(cfg.block_threads)), stream, step, logits, V);
}

}  // namespace q4jit
