// Loading and launching the attention families (attention_runner.hpp).
#include "tuner/attention_runner.hpp"

namespace q4jit {

KernelFamily prefill_family(AttentionPrefillPath path) {
  return path == AttentionPrefillPath::simt ? attention_prefill_family()
                                            : attention_prefill_mma_family();
}

KernelVariant prefill_variant(const PrefillChoice& choice) {
  if (choice.path == AttentionPrefillPath::simt)
    return {to_string(choice.simt), name_expression(choice.simt)};
  return {to_string(choice.mma), name_expression(choice.mma)};
}

KernelVariant decode_variant(const AttentionDecodeConfig& cfg) {
  return {to_string(cfg), name_expression(cfg)};
}

std::vector<Result<AttentionKernel>> load_attention_kernels(
    Backend& backend, KernelService& service, const KernelFamily& family,
    const std::vector<KernelVariant>& variants, int jobs) {
  const CompileTarget target =
      select_target(backend.current_device().sm(), service.compiler().supported_archs());
  std::vector<CompileRequest> requests;
  for (const KernelVariant& variant : variants)
    requests.push_back(make_request(family, variant, target));
  std::vector<Result<CompiledKernel>> compiled = service.get_all(requests, jobs);
  std::vector<Result<AttentionKernel>> kernels;
  for (size_t i = 0; i < variants.size(); ++i) {
    if (!compiled[i].ok()) {
      kernels.push_back(
          Error(family.name + " " + variants[i].config + ": " + compiled[i].error().what())
              .with("detail", compiled[i].error().describe()));
      continue;
    }
    try {
      auto module = std::make_shared<const LoadedModule>(backend.load_module(compiled[i].value()));
      const Function function = module->function(variants[i].name_expression);
      kernels.push_back(AttentionKernel{std::move(module), function});
    } catch (const Error& error) {
      kernels.push_back(error);
    }
  }
  return kernels;
}

void launch_attention_prefill(Backend& backend, const Function& function,
                              const PrefillChoice& choice, const AttentionPrefillShape& shape,
                              const AttentionOperands& operands, float scale, StreamView stream) {
  const AttentionPrefillGeometry g = choice.path == AttentionPrefillPath::simt
                                         ? geometry(choice.simt, shape)
                                         : geometry(choice.mma, shape);
  const int width = int(shape.heads * shape.head_dim);
  launch_kernel(
      backend, function, launch_geometry(g.grid_x, g.grid_y, g.block_x, g.dynamic_smem_bytes),
      stream, operands.out, int(shape.out_stride ? shape.out_stride : width), operands.q,
      int(shape.q_stride ? shape.q_stride : width), operands.key_cache, operands.value_cache,
      int(shape.tokens), int(shape.first_position), int(shape.heads), int(shape.kv_heads), scale);
}

void launch_attention_decode(Backend& backend, const Function& function,
                             const AttentionDecodeConfig& cfg, const AttentionDecodeShape& shape,
                             int splits, const AttentionOperands& operands,
                             const AttentionDecodeState& state, float scale, StreamView stream) {
  const AttentionDecodeGeometry g = geometry(cfg, shape);
  const AttentionDecodeWorkspace layout = workspace(cfg, shape);
  launch_kernel(backend, function, launch_geometry(g.grid_x, unsigned(splits), g.block_x, 0),
                stream, operands.out, operands.q, operands.key_cache, operands.value_cache,
                state.workspace, state.workspace + layout.partials_offset, state.length,
                int(shape.heads), int(shape.kv_heads), scale, state.out_position);
}

void launch_attention_decode_rope(Backend& backend, const Function& function,
                                  const AttentionDecodeConfig& cfg,
                                  const AttentionDecodeShape& shape, int splits,
                                  const AttentionOperands& operands,
                                  const AttentionDecodeState& state,
                                  const AttentionDecodeRope& rope, float scale, StreamView stream) {
  const AttentionDecodeGeometry g = geometry(cfg, shape);
  const AttentionDecodeWorkspace layout = workspace(cfg, shape);
  launch_kernel(backend, function, launch_geometry(g.grid_x, unsigned(splits), g.block_x, 0),
                stream, operands.out, operands.q, rope.k, rope.v, operands.key_cache,
                operands.value_cache, state.workspace, state.workspace + layout.partials_offset,
                rope.positions, state.length, rope.max_positions, int(shape.heads),
                int(shape.kv_heads), rope.theta, rope.scale, scale, state.out_position);
}

}  // namespace q4jit
