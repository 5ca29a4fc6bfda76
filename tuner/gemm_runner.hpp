// Compiling, loading and launching the dequantize + GEMM path on a Backend: gemm_f16 (x W^T, W
// fp16 [N, K]) and dequantize_q4 (GPTQ -> that W). What their tests, benchmarks and the tuner
// share. Not here: the kernels and legality (kernel_sources/gemm_f16.hpp, dequantize_q4.hpp).
#pragma once

#include <memory>
#include <vector>

#include "kernel_sources/dequantize_q4.hpp"
#include "kernel_sources/gemm_f16.hpp"
#include "tuner/batch_loader.hpp"

namespace q4jit {

struct GemmKernel {
  GemmConfig config;
  std::shared_ptr<const LoadedModule> module;
  Function function;
};

struct DequantizeKernel {
  DequantizeConfig config;
  std::shared_ptr<const LoadedModule> module;
  Function function;
};

// Device addresses of one GEMM's operands.
struct GemmOperands {
  uint64_t out = 0;        // fp16 [M, N]
  uint64_t x = 0;          // fp16 [M, K]
  uint64_t weight = 0;     // fp16 [N, K]
  uint64_t workspace = 0;  // workspace(cfg, shape).bytes, zero before first use (split-K only)
};

// Device addresses of one dequantization.
struct DequantizeOperands {
  uint64_t weight = 0;     // out: fp16 [N, K], original row order
  uint64_t qweight = 0;    // int32 [K/8, N], rows sorted when act-order
  uint64_t scales = 0;     // fp16 [G, N]
  uint64_t qzeros = 0;     // int32 [G, N/8]
  uint64_t sorted_of = 0;  // int32 [K] (sorted_row_of(x_map)), or 0 without act-order
};

std::vector<CompileRequest> gemm_f16_requests(const std::vector<GemmConfig>& configs,
                                              const CompileTarget& target, int per_program);

std::vector<Result<GemmKernel>> load_gemm_f16(Backend& backend, KernelService& service,
                                              const std::vector<GemmConfig>& configs, int jobs);
std::vector<Result<DequantizeKernel>> load_dequantize_q4(
    Backend& backend, KernelService& service, const std::vector<DequantizeConfig>& configs,
    int jobs);

void launch_gemm_f16(Backend& backend, const GemmKernel& kernel, const GemmShape& shape,
                     const GemmOperands& operands, StreamView stream);
void launch_dequantize_q4(Backend& backend, const DequantizeKernel& kernel,
                          const DequantizeShape& shape, const DequantizeOperands& operands,
                          StreamView stream);

}  // namespace q4jit
