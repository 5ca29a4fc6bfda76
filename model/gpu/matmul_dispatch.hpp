// Runs one device projection (device_model.hpp) at M rows with the kernel the MatmulChooser picks
// for its shape and M bucket: the q4 GEMV, the tensor-core q4 GEMM or dequantize + fp16 GEMM for
// GPTQ weights; the fp16 GEMV (lm_head kernel) or fp16 GEMM for dense ones. Choices and loaded
// kernels are kept per (shape, M bucket), so after the first call of a shape a launch does no host
// work beyond filling its arguments. Not here: choosing (tuner/matmul_choice.hpp), the kernels.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "kernel_sources/lm_head.hpp"
#include "model/gpu/device_model.hpp"
#include "model/gpu/kernel_loader.hpp"
#include "tuner/gemm_runner.hpp"
#include "tuner/matmul_choice.hpp"
#include "tuner/q4_matmul_runner.hpp"
#include "tuner/q4_mma_runner.hpp"

namespace q4jit {

class MatmulDispatch {
 public:
  // forced: every GPTQ projection takes this path whatever the chooser says (perplexity
  // --validate compares the paths); gemv and mma fall back to the default config.
  MatmulDispatch(KernelLoader& loader, const MatmulChooser& chooser,
                 std::optional<MatmulPath> forced = std::nullopt);

  // Act-order weights are multiplied as the plain GPTQ matrix their sorted rows form (group g is
  // rows g*group_size.., model/gptq.hpp), with x in the same sorted order: the producer of x
  // writes it so when it can (x_sorted in run), else run gathers it first. So every path runs
  // and is tuned as act_order = false (run_shape), and no kernel reads x through x_map.
  static MatmulShapeKey run_shape(const DeviceLinear& linear);

  // Chooses, compiles and loads the kernels of `linear` at M rows; returns the scratch bytes the
  // launch needs (gathered activations, a dequantized weight: free memory, any content). The
  // split-K workspaces that must start zero are owned here, one per choice, because a kernel
  // that writes scratch would break another's zero invariant in a shared buffer.
  int64_t prepare(const DeviceLinear& linear, int64_t M);
  // Enqueues out[M, N] = x[M, K] W^T (fp16). x is in original row order, or in the weights'
  // sorted row order (x[s] = original x[x_map[s]]) when x_sorted. prepare() first, and
  // `scratch` at least the bytes it returned.
  void run(const DeviceLinear& linear, int64_t M, uint64_t x, uint64_t out, uint64_t scratch,
           StreamView stream, bool x_sorted = false);
  // The fused decode launches (q4_matmul.hpp: Q4Fusion), one row only, with the configuration
  // MatmulChooser::fused_gemv names (the chosen GEMV when it is fusable: stream-K or tile; else
  // the fastest fusable one tuned). fusable: whether there is one. prepare_fused loads the
  // kernel of `fusion`; run_fused enqueues it, with x in the weights' row order, except for the
  // norm input without x_sorted: original order, gathered through x_map by act-order weights
  // (and the norm weight in the order of x).
  bool fusable(const DeviceLinear& linear);
  void prepare_fused(const DeviceLinear& linear, const Q4Fusion& fusion);
  void run_fused(const DeviceLinear& linear, const Q4Fusion& fusion, uint64_t x, uint64_t out,
                 const Q4FusionOperands& operands, StreamView stream, bool x_sorted = false);
  // The choice for linear at M rows, for --verbose lines: "gemv bt256... (tuned)".
  std::string describe(const DeviceLinear& linear, int64_t M);

 private:
  struct Prepared {
    MatmulChoice choice;
    Q4MatmulKernel gemv;
    Q4MmaKernel mma;
    DequantizeKernel dequantize;
    GemmKernel gemm;
    Function dense_gemv;  // lm_head kernel for dense weights at few rows
    LmHeadConfig dense_config;
    bool dense_small = false;
    DeviceBuffer zeroed;  // the split-K workspace, zero between launches; empty when none
    int64_t scratch_bytes = 0;
    Function gather;           // act-order weights, x not sorted by its producer: q4_gather_kernel
    int64_t gather_bytes = 0;  // the sorted x at the start of scratch
    std::map<std::pair<int, bool>, Function> fused;  // by (input, residual): prepare_fused
    bool fused_resolved = false;                     // fused_config looked up (prepared_fused)
    std::optional<Q4MatmulConfig> fused_config;      // M = 1: the fused launches' GEMV
    DeviceBuffer fused_zeroed;  // its workspace when it is not choice.gemv (else zeroed)
  };
  using Key = std::tuple<bool, int64_t, int64_t, int64_t, bool, int>;
  Prepared& prepared(const DeviceLinear& linear, int64_t M);
  // prepared(linear, 1) with fused_config resolved (and its workspace allocated).
  Prepared& prepared_fused(const DeviceLinear& linear);
  // Each also sets zeroed_bytes: the workspace that prepared() allocates and zeroes.
  Prepared prepare_quantized(const DeviceLinear& linear, int bucket, int64_t& zeroed_bytes);
  Prepared prepare_dense(const DeviceLinear& linear, int bucket, int64_t& zeroed_bytes);

  KernelLoader& loader_;
  const MatmulChooser& chooser_;
  std::optional<MatmulPath> forced_;
  std::map<Key, Prepared> prepared_;
};

}  // namespace q4jit
