// The q4_matmul family seen by the tuner: its candidates for one shape as footprints (threads,
// shared memory, M tile, divisibility) and config strings mapped back to configurations.
// The family's own legal() stays the authority; tests check that pruning agrees with it.
// Also the one request a winner is compiled and loaded by, so the recorded key is the loaded one.
// Not here: the kernels (kernel_sources/q4_matmul.*), compiling and launching
// (q4_matmul_runner.hpp), the tuning loop (autotuner.hpp).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernel_sources/q4_matmul.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/candidates.hpp"

namespace q4jit {

// The candidates of the family for a shape (M = the bucket), default first: every
// configuration of q4_matmul_configs() that applies to its weights (xp only with act-order).
std::vector<Q4MatmulConfig> q4_matmul_candidates(const Q4MatmulShape& shape);
// Shared memory per block as q4_matmul.cu declares it (staged x, warp partials, a flag).
int64_t q4_matmul_smem_bytes(const Q4MatmulConfig& cfg);
CandidateFootprint q4_matmul_footprint(const Q4MatmulConfig& cfg, const Q4MatmulShape& shape);
// Config string -> configuration, for every configuration of the space.
const std::map<std::string, Q4MatmulConfig>& q4_matmul_configs_by_name();

// The request a warm load of a tuned winner makes: the winner alone in its program (not the
// tuner's batches), so its store key does not depend on what else was compiled with it.
CompileRequest q4_matmul_winner_request(const Q4MatmulConfig& cfg, const CompileTarget& target);
// Compiles (store first) the winner's request and returns its store key, to be recorded with
// the winner: a later no-compile load of q4_matmul_winner_request finds it.
Result<std::string> record_winner_kernel(KernelService& service, const Q4MatmulConfig& cfg,
                                         const CompileTarget& target);

}  // namespace q4jit
