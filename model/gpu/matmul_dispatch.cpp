// Choosing, loading and launching the kernels of device projections (matmul_dispatch.hpp).
#include "model/gpu/matmul_dispatch.hpp"

#include "tuner/batch_loader.hpp"
#include "tuner/q4_matmul_tuning.hpp"

namespace q4jit {

namespace {

// Dense projections use the fp16 GEMV up to this many rows, the tensor-core GEMM above.
constexpr int64_t kDenseGemvMaxRows = 8;

// A forced path with its default configuration for the shape.
MatmulChoice forced_choice(MatmulPath path, const MatmulShapeKey& shape, int64_t M,
                           const DeviceInfo& device) {
  MatmulChoice choice;
  choice.path = path;
  if (path == MatmulPath::gemv) {
    const auto configs =
        space(device, Q4MatmulShape{M, shape.K, shape.N, shape.group_size, shape.act_order});
    Q4JIT_CHECK(!configs.empty(), "gemv: no legal configuration for this shape");
    choice.gemv = configs.front();
  } else if (path == MatmulPath::mma) {
    const Q4MmaShape mma_shape{M, shape.K, shape.N, shape.group_size, shape.act_order};
    choice.mma = q4_mma_default(device, mma_shape);
    Q4JIT_CHECK(legal(choice.mma, device, mma_shape), "mma: no legal configuration for this shape");
  } else {
    const auto configs = space(device, GemmShape{M, shape.K, shape.N});
    Q4JIT_CHECK(!configs.empty(), "dequant_gemm: no legal GEMM configuration for this shape");
    choice.gemm = configs.front();
  }
  return choice;
}

}  // namespace

MatmulDispatch::MatmulDispatch(KernelLoader& loader, const MatmulChooser& chooser,
                               std::optional<MatmulPath> forced)
    : loader_(loader), chooser_(chooser), forced_(forced) {}

MatmulShapeKey MatmulDispatch::run_shape(const DeviceLinear& linear) {
  MatmulShapeKey shape = linear.shape;
  shape.act_order = false;
  return shape;
}

int64_t MatmulDispatch::prepare(const DeviceLinear& linear, int64_t M) {
  return prepared(linear, M).scratch_bytes;
}

std::string MatmulDispatch::describe(const DeviceLinear& linear, int64_t M) {
  const Prepared& p = prepared(linear, M);
  if (!linear.quantized) return p.dense_small ? "dense gemv" : "dense " + to_string(p.gemm.config);
  return p.choice.describe();
}

MatmulDispatch::Prepared& MatmulDispatch::prepared(const DeviceLinear& linear, int64_t M) {
  const int bucket = m_bucket(M);
  const MatmulShapeKey s = run_shape(linear);
  const Key key{linear.quantized, s.K, s.N, s.group_size, linear.shape.act_order, bucket};
  if (auto found = prepared_.find(key); found != prepared_.end()) return found->second;
  int64_t zeroed_bytes = 0;
  Prepared p = linear.quantized ? prepare_quantized(linear, bucket, zeroed_bytes)
                                : prepare_dense(linear, bucket, zeroed_bytes);
  if (zeroed_bytes > 0) {
    Backend& backend = loader_.backend();
    p.zeroed = backend.allocate(size_t(zeroed_bytes));
    backend.memset(p.zeroed.raw(), 0, size_t(zeroed_bytes), {});
    backend.synchronize({});
  }
  return prepared_.emplace(key, std::move(p)).first->second;
}

MatmulDispatch::Prepared& MatmulDispatch::prepared_fused(const DeviceLinear& linear) {
  Prepared& p = prepared(linear, 1);
  if (p.fused_resolved) return p;
  p.fused_resolved = true;
  if (!linear.quantized) return p;
  const bool chosen = p.choice.path == MatmulPath::gemv && q4jit::fusable(p.choice.gemv);
  p.fused_config = chosen ? p.choice.gemv : chooser_.fused_gemv(run_shape(linear));
  if (!p.fused_config || chosen) return p;
  // Its own split-K workspace: the zero invariant is per configuration (prepared()).
  const MatmulShapeKey s = run_shape(linear);
  const int64_t bytes =
      workspace(*p.fused_config, Q4MatmulShape{1, s.K, s.N, s.group_size, false}).bytes;
  if (bytes > 0) {
    Backend& backend = loader_.backend();
    p.fused_zeroed = backend.allocate(size_t(bytes));
    backend.memset(p.fused_zeroed.raw(), 0, size_t(bytes), {});
    backend.synchronize({});
  }
  return p;
}

bool MatmulDispatch::fusable(const DeviceLinear& linear) {
  return prepared_fused(linear).fused_config.has_value();
}

void MatmulDispatch::prepare_fused(const DeviceLinear& linear, const Q4Fusion& fusion) {
  Prepared& p = prepared_fused(linear);
  Q4JIT_CHECK(p.fused_config.has_value(), linear.name + ": no fused form at one row");
  const std::pair<int, bool> key{int(fusion.input), fusion.residual};
  if (p.fused.count(key) == 0)
    p.fused[key] =
        loader_.function(q4_matmul_family(), q4_matmul_fused_variant(*p.fused_config, fusion));
}

void MatmulDispatch::run_fused(const DeviceLinear& linear, const Q4Fusion& fusion, uint64_t x,
                               uint64_t out, const Q4FusionOperands& operands, StreamView stream,
                               bool x_sorted) {
  Prepared& p = prepared_fused(linear);
  const auto found = p.fused.find({int(fusion.input), fusion.residual});
  Q4JIT_CHECK(found != p.fused.end(), linear.name + ": fused kernel not prepared");
  const MatmulShapeKey s = run_shape(linear);
  // Only the norm input reads x through x_map, and only when its producer did not sort it; the
  // others get x in the weights' order.
  const bool gather = fusion.input == Q4FusedInput::norm && linear.shape.act_order && !x_sorted;
  const DeviceBuffer& zeroed = p.fused_zeroed ? p.fused_zeroed : p.zeroed;
  const Q4MatmulOperands product{out,
                                 x,
                                 gather ? linear.x_map.raw() : 0,
                                 linear.qweight.raw(),
                                 linear.scales.raw(),
                                 linear.qzeros.raw(),
                                 zeroed ? zeroed.raw() : 0};
  launch_q4_matmul_fused(loader_.backend(), found->second, *p.fused_config,
                         {1, s.K, s.N, s.group_size, gather}, product, operands, stream);
}

MatmulDispatch::Prepared MatmulDispatch::prepare_quantized(const DeviceLinear& linear, int bucket,
                                                           int64_t& zeroed_bytes) {
  const MatmulShapeKey s = run_shape(linear);
  const DeviceInfo& device = loader_.backend().current_device();
  const CompileTarget& target = loader_.target();
  Prepared p;
  p.choice = forced_ ? forced_choice(*forced_, s, bucket, device) : chooser_.choose(s, bucket);
  if (linear.shape.act_order) {
    const Q4MatmulConfig gemv_default;
    p.gather = loader_.function(q4_matmul_winner_request(gemv_default, target),
                                q4_gather_name_expression());
    p.gather_bytes = int64_t(bucket) * s.K * 2;
  }
  switch (p.choice.path) {
    case MatmulPath::gemv: {
      const Q4MatmulConfig& cfg = p.choice.gemv;
      const CompileRequest request = q4_matmul_winner_request(cfg, target);
      p.gemv = {cfg, nullptr, loader_.function(request, name_expression(cfg)),
                loader_.function(request, q4_gather_name_expression())};
      zeroed_bytes = workspace(cfg, Q4MatmulShape{bucket, s.K, s.N, s.group_size, false}).bytes;
      break;
    }
    case MatmulPath::mma: {
      const Q4MmaConfig& cfg = p.choice.mma;
      const auto request = batched_requests(q4_mma_family(), {name_expression(cfg)}, target, 1);
      p.mma = {cfg, nullptr, loader_.function(request.front(), name_expression(cfg))};
      zeroed_bytes = workspace(cfg, Q4MmaShape{bucket, s.K, s.N, s.group_size, false}).bytes;
      break;
    }
    case MatmulPath::dequant_gemm: {
      const DequantizeConfig& dq = p.choice.dequantize;
      const GemmConfig& cfg = p.choice.gemm;
      const auto dq_request =
          batched_requests(dequantize_q4_family(), {name_expression(dq)}, target, 1);
      const auto gemm_request =
          batched_requests(gemm_f16_family(), {name_expression(cfg)}, target, 1);
      p.dequantize = {dq, nullptr, loader_.function(dq_request.front(), name_expression(dq))};
      p.gemm = {cfg, nullptr, loader_.function(gemm_request.front(), name_expression(cfg))};
      zeroed_bytes = workspace(cfg, GemmShape{bucket, s.K, s.N}).bytes;
      p.scratch_bytes = s.N * s.K * 2;
      break;
    }
  }
  p.scratch_bytes += p.gather_bytes;  // the sorted x first, a dequantized weight after it
  return p;
}

MatmulDispatch::Prepared MatmulDispatch::prepare_dense(const DeviceLinear& linear, int bucket,
                                                       int64_t& zeroed_bytes) {
  const MatmulShapeKey& s = linear.shape;
  const DeviceInfo& device = loader_.backend().current_device();
  Prepared p;
  if (bucket <= kDenseGemvMaxRows || !gemm_f16_family().supports(device.sm())) {
    const auto configs = space(device, LmHeadShape{bucket, s.K, s.N}, false);
    Q4JIT_CHECK(!configs.empty(), linear.name + ": no fp16 GEMV configuration for this shape");
    p.dense_small = true;
    p.dense_config = configs.front();
    p.dense_gemv = loader_.function(lm_head_family(),
                                    {to_string(configs.front()), name_expression(configs.front())});
    return p;
  }
  const auto configs = space(device, GemmShape{bucket, s.K, s.N});
  Q4JIT_CHECK(!configs.empty(), linear.name + ": no fp16 GEMM configuration for this shape");
  const GemmConfig& cfg = configs.front();
  const auto request =
      batched_requests(gemm_f16_family(), {name_expression(cfg)}, loader_.target(), 1);
  p.gemm = {cfg, nullptr, loader_.function(request.front(), name_expression(cfg))};
  zeroed_bytes = workspace(cfg, GemmShape{bucket, s.K, s.N}).bytes;
  return p;
}

void MatmulDispatch::run(const DeviceLinear& linear, int64_t M, uint64_t x, uint64_t out,
                         uint64_t scratch, StreamView stream, bool x_sorted) {
  const Prepared& p = prepared(linear, M);
  const uint64_t workspace_address = p.zeroed ? p.zeroed.raw() : 0;
  Backend& backend = loader_.backend();
  const MatmulShapeKey s = run_shape(linear);
  if (!linear.quantized) {
    if (p.dense_small) {
      const LmHeadGeometry g = geometry(p.dense_config, LmHeadShape{M, s.K, s.N});
      LaunchGeometry launch;
      launch.grid = {g.grid_x, g.grid_y, 1};
      launch.block = {g.block_x, 1, 1};
      launch_kernel(backend, p.dense_gemv, launch, stream, out, x, linear.dense.raw(), int(M),
                    int(s.K), int(s.N));
      return;
    }
    launch_gemm_f16(backend, p.gemm, GemmShape{M, s.K, s.N},
                    {out, x, linear.dense.raw(), workspace_address}, stream);
    return;
  }
  if (linear.shape.act_order && !x_sorted) {
    LaunchGeometry gather;
    gather.grid = {unsigned((s.K + 255) / 256), unsigned(M), 1};
    gather.block = {256, 1, 1};
    launch_kernel(backend, p.gather, gather, stream, scratch, x, linear.x_map.raw(), int(s.K));
    x = scratch;
  }
  const Q4MatmulOperands operands{
      out, x, 0, linear.qweight.raw(), linear.scales.raw(), linear.qzeros.raw(), workspace_address};
  const Q4MatmulShape shape{M, s.K, s.N, s.group_size, false};
  switch (p.choice.path) {
    case MatmulPath::gemv:
      launch_q4_matmul(backend, p.gemv, shape, operands, stream);
      break;
    case MatmulPath::mma:
      launch_q4_mma(backend, p.mma, {M, s.K, s.N, s.group_size, false}, operands, stream);
      break;
    case MatmulPath::dequant_gemm: {
      const uint64_t weight = scratch + uint64_t(p.gather_bytes);
      launch_dequantize_q4(
          backend, p.dequantize, {s.K, s.N, s.group_size},
          {weight, linear.qweight.raw(), linear.scales.raw(), linear.qzeros.raw(), 0}, stream);
      launch_gemm_f16(backend, p.gemm, GemmShape{M, s.K, s.N}, {out, x, weight, workspace_address},
                      stream);
      break;
    }
  }
}

}  // namespace q4jit
