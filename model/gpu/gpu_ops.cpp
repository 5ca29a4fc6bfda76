// Launching the non-projection kernels of the forward pass (gpu_ops.hpp).
#include "model/gpu/gpu_ops.hpp"

#include <algorithm>
#include <bit>

#include "kernel_sources/attention_prefill_mma.hpp"
#include "kernel_sources/elementwise.hpp"
#include "kernel_sources/embedding.hpp"
#include "kernel_sources/lm_head.hpp"
#include "kernel_sources/rms_norm.hpp"

namespace q4jit {

namespace {

template <typename Configs>
auto first_legal(const Configs& configs, const std::string& what) {
  Q4JIT_CHECK(!configs.empty(), what + ": no kernel configuration is legal for this shape");
  return configs.front();
}

LaunchGeometry launch_geometry(unsigned grid_x, unsigned grid_y, unsigned block_x,
                               int64_t dynamic_smem_bytes = 0) {
  LaunchGeometry geometry;
  geometry.grid = {grid_x, grid_y, 1};
  geometry.block = {block_x, 1, 1};
  geometry.dynamic_smem_bytes = dynamic_smem_bytes;
  return geometry;
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

// Per split size, 256 threads and two query heads per block where the group allows: the fastest
// on the H100 at 4096 positions for 32 and for 64 heads (OpsGpu.AttentionTimings).
void GpuOps::set_decode_limits(int heads, int kv_heads, int head_dim, int max_length) {
  decode_shape_ = {heads, kv_heads, head_dim, max_length};
  decode_configs_.clear();
  for (const AttentionDecodeConfig& cfg : space(device(), decode_shape_)) {
    auto [found, added] = decode_configs_.emplace(cfg.split, cfg);
    const bool preferred = cfg.threads == 256 && cfg.heads_per_block <= 2;
    const bool had_preferred = found->second.threads == 256 && found->second.heads_per_block <= 2;
    if (!added && preferred &&
        (!had_preferred || cfg.heads_per_block > found->second.heads_per_block))
      found->second = cfg;
  }
  Q4JIT_CHECK(!decode_configs_.empty(),
              "attention_decode: no kernel configuration is legal for this shape");
}

DecodePlan GpuOps::decode_plan(int length) const {
  const int64_t block_limit = 4 * int64_t(device().sm_count);
  DecodePlan plan;
  for (const auto& [split, cfg] : decode_configs_) {
    plan = {split, int((length + split - 1) / split)};
    if (int64_t(plan.splits) * (decode_shape_.heads / cfg.heads_per_block) <= block_limit) break;
  }
  return plan;
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
  const AttentionDecodeGeometry g = geometry(cfg, decode_shape_);
  const AttentionDecodeWorkspace layout = workspace(cfg, decode_shape_);
  launch_kernel(
      loader_.backend(), function(attention_decode_family(), to_string(cfg), name_expression(cfg)),
      launch_geometry(g.grid_x, unsigned(plan.splits), g.block_x), stream, out, q, key_cache,
      value_cache, workspace_address, workspace_address + layout.partials_offset, length_in,
      int(decode_shape_.heads), int(decode_shape_.kv_heads), scale, out_position);
}

void GpuOps::attention_prefill(const AttentionPrefillShape& shape, uint64_t out, uint64_t q,
                               uint64_t key_cache, uint64_t value_cache, float scale,
                               StreamView stream) {
  const int width = int(shape.heads * shape.head_dim);
  auto launch = [&](const Function& kernel, const AttentionPrefillGeometry& g) {
    launch_kernel(loader_.backend(), kernel,
                  launch_geometry(g.grid_x, g.grid_y, g.block_x, g.dynamic_smem_bytes), stream, out,
                  int(shape.out_stride ? shape.out_stride : width), q,
                  int(shape.q_stride ? shape.q_stride : width), key_cache, value_cache,
                  int(shape.tokens), int(shape.first_position), int(shape.heads),
                  int(shape.kv_heads), scale);
  };
  // Tensor cores where that family runs (NVIDIA sm_80+, D 64 or 128), else the SIMT kernel.
  const std::vector<AttentionPrefillMmaConfig> mma = attention_prefill_mma_space(device(), shape);
  if (!mma.empty()) {
    const AttentionPrefillMmaConfig& cfg = mma.front();
    launch(function(attention_prefill_mma_family(), to_string(cfg), name_expression(cfg)),
           geometry(cfg, shape));
    return;
  }
  const AttentionPrefillConfig cfg = first_legal(space(device(), shape), "attention_prefill");
  launch(function(attention_prefill_family(), to_string(cfg), name_expression(cfg)),
         geometry(cfg, shape));
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

}  // namespace q4jit
