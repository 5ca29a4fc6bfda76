// The dequantize + GEMM path (dequantize_q4 to an fp16 [N, K] scratch matrix, then gemm_f16) seen
// by the tuner as one pseudo-family, "dequant_gemm": a configuration is a pair written
// "<dequantize>+<gemm>" ("bt256.tk64+tm64.tn128.tk32.wm2.wn2.st3.sk1"), its source hash covers
// both families, and a winner's warm load makes one request per kernel (as the engine's
// model/gpu/matmul_dispatch.cpp does). Not here: the kernels (kernel_sources/dequantize_q4.*,
// gemm_f16.*), launching (gemm_runner.hpp), the tuning loop (autotuner.hpp).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kernel_sources/dequantize_q4.hpp"
#include "kernel_sources/gemm_f16.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/candidates.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

inline constexpr const char* kDequantGemmFamily = "dequant_gemm";
// gemm_f16 on fp16 weights that dequantize_q4 made exactly (q4_mma.hpp's bound, same rounding).
inline constexpr double kDequantGemmTolerance = 2e-3;

struct DequantGemmConfig {
  DequantizeConfig dequantize;
  GemmConfig gemm;
};
std::string to_string(const DequantGemmConfig& cfg);
// The inverse of to_string for configurations of both spaces; nullopt otherwise.
std::optional<DequantGemmConfig> parse_dequant_gemm(const std::string& text);

// The candidates at a shape and M bucket, default first: the default dequantization with the
// first legal GEMM configuration (what the engine takes by default), then, when whole_gemm_space,
// the default dequantization with every other GEMM configuration. Empty when no GEMM is legal.
std::vector<DequantGemmConfig> dequant_gemm_candidates(const DeviceInfo& device,
                                                       const MatmulShapeKey& shape, int bucket,
                                                       bool whole_gemm_space);
CandidateFootprint dequant_gemm_footprint(const DequantGemmConfig& cfg, const DeviceInfo& device,
                                          const MatmulShapeKey& shape, int bucket);

// SHA-256 over both families' source hashes.
std::string dequant_gemm_source_hash();

// The requests a warm load makes: the dequantization's kernel, then the GEMM's, each alone.
std::vector<CompileRequest> dequant_gemm_winner_requests(const DequantGemmConfig& cfg,
                                                         const CompileTarget& target);

}  // namespace q4jit
