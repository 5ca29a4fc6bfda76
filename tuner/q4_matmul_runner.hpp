// Compiling, loading and launching the q4_matmul family on a Backend: what its test, the
// benchmark and the tuner share. Many configurations go into one NVRTC program (several name
// expressions per request), which makes compiling the whole space several times faster.
// Not here: the kernels and their legality (kernel_sources/q4_matmul.hpp), timing (measure.hpp).
#pragma once

#include <memory>
#include <vector>

#include "kernel_sources/q4_matmul.hpp"
#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"

namespace q4jit {

// Device addresses of one launch's operands (0 for x_map without act-order).
struct Q4MatmulOperands {
  uint64_t out = 0;        // fp16 [M, N]
  uint64_t x = 0;          // fp16 [M, K], original row order
  uint64_t x_map = 0;      // int32 [K]: sorted row -> original row
  uint64_t qweight = 0;    // int32 [K/8, N], rows sorted when act-order
  uint64_t scales = 0;     // fp16 [G, N]
  uint64_t qzeros = 0;     // int32 [G, N/8]
  uint64_t workspace = 0;  // workspace(cfg, shape).bytes, its zeroed part zero before first use
};

// One configuration ready to launch.
struct Q4MatmulKernel {
  Q4MatmulConfig config;
  std::shared_ptr<const LoadedModule> module;  // shared by the configs compiled together
  Function matmul;
  Function gather;
};

// The requests compiling `configs` for `target`, at most `per_program` distinct kernels each.
std::vector<CompileRequest> q4_matmul_requests(const std::vector<Q4MatmulConfig>& configs,
                                               const CompileTarget& target, int per_program);

// Compiles (through the service: store first) and loads every config; a config whose program
// failed to compile or load is an Error in its slot.
std::vector<Result<Q4MatmulKernel>> load_q4_matmul(Backend& backend, KernelService& service,
                                                   const std::vector<Q4MatmulConfig>& configs,
                                                   int jobs);

// Enqueues one product on `stream`: the gather first for xp, then the matmul.
void launch_q4_matmul(Backend& backend, const Q4MatmulKernel& kernel, const Q4MatmulShape& shape,
                      const Q4MatmulOperands& operands, StreamView stream);

// The fused decode kernels (q4_matmul.hpp: Q4Fusion; q4_stream.cuh: q4_stream_fused_kernel).
// Device addresses of what a fused launch reads and writes besides the product's operands
// (0 where unused); laid out as the kernel's Q4StreamFusion parameter.
struct Q4FusionOperands {
  uint64_t norm_weight = 0;     // norm input: fp16 [K]
  uint64_t input_delta = 0;     // norm input: fp16 [K] added to x first, or 0
  uint64_t up = 0;              // silu input: fp16 [K]; x is the gate
  uint64_t residual = 0;        // residual output: fp16 [N], written instead of out
  uint64_t residual_delta = 0;  // residual output: fp16 [N] added first, or 0
  // residual output: fp16 [N], the new residual row again with element n at sorted_position[n]
  // (int32 [N], original -> sorted row of the next projection), or 0.
  uint64_t sorted_copy = 0;
  uint64_t sorted_position = 0;
  float eps = 0;  // norm input
};
// The program holding the fused kernel of (cfg, fusion) for `target`: the kernel alone.
KernelVariant q4_matmul_fused_variant(const Q4MatmulConfig& cfg, const Q4Fusion& fusion);
// Enqueues one fused product (M = 1; no xp gather: x_map in operands is read by the kernel, for
// the norm input only). `function` is the variant's loaded kernel.
void launch_q4_matmul_fused(Backend& backend, const Function& function, const Q4MatmulConfig& cfg,
                            const Q4MatmulShape& shape, const Q4MatmulOperands& operands,
                            const Q4FusionOperands& fusion, StreamView stream);

}  // namespace q4jit
