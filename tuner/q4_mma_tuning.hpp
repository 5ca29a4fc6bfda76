// The q4_mma family (tensor-core q4 GEMM) seen by the tuner: its candidates for one shape as
// footprints (threads, shared memory, M tile, legality for the shape), config strings mapped back
// to configurations, and the one request a warm load of a winner makes (the engine's
// model/gpu/matmul_dispatch.cpp makes the same), so the recorded store key is the loaded one.
// The family's own legal() stays the authority. Not here: the kernels (kernel_sources/q4_mma.*),
// compiling and launching (q4_mma_runner.hpp), the tuning loop (autotuner.hpp).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernel_sources/q4_mma.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/candidates.hpp"

namespace q4jit {

// Relative error bound of every q4_mma config against the fp32 reference (q4_mma.hpp).
inline constexpr double kQ4MmaTolerance = 2e-3;

// What cfg demands at `shape` (M = the bucket): the candidates are q4_mma_configs(), default
// first; configurations that differ only in sk share a kernel (sk is a launch parameter).
CandidateFootprint q4_mma_footprint(const Q4MmaConfig& cfg, const DeviceInfo& device,
                                    const Q4MmaShape& shape);
const std::map<std::string, Q4MmaConfig>& q4_mma_configs_by_name();

// The request a warm load of `cfg` makes: its kernel alone in its program.
CompileRequest q4_mma_winner_request(const Q4MmaConfig& cfg, const CompileTarget& target);

}  // namespace q4jit
