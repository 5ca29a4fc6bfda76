// Which candidates of a family's space are worth compiling and timing for one problem: pruning
// before compiling from each configuration's footprint (threads, shared memory, divisibility, M
// tile against the bucket) and after compiling from the function's attributes (spills, zero
// occupancy). Generic: a family describes its configurations as footprints
// (tuner/q4_matmul_tuning.hpp does it for q4_matmul). Not here: validation or timing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "runtime/backend.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

// What a configuration demands of the device and the shape, known before compiling.
struct CandidateFootprint {
  std::string config;
  int block_threads = 0;
  int64_t smem_bytes = 0;   // static + dynamic shared memory per block
  int m_tile = 1;           // rows of x one block handles per pass
  std::string indivisible;  // empty when the shape divides as the config needs, else why not
};

struct CandidateVerdict {
  std::string config;
  TrialStatus status = TrialStatus::ok;  // ok: go on to compile
  std::string detail;
};

// One verdict per footprint, in order. Checked in this order: threads, shared memory,
// divisibility, M tile > bucket.
std::vector<CandidateVerdict> prune_before_compile(const std::vector<CandidateFootprint>& space,
                                                   const DeviceInfo& device, int m_bucket);

struct PostCompileLimits {
  int64_t local_bytes_limit = 128;  // per thread: above this, spills cost more than they save
};
// A pruned verdict for a compiled function, or nullopt when it may be timed.
std::optional<CandidateVerdict> prune_after_compile(const std::string& config,
                                                    const FunctionAttributes& attributes,
                                                    int max_active_blocks_per_sm,
                                                    const PostCompileLimits& limits = {});

}  // namespace q4jit
