// Measuring and storing the attention decisions of one model geometry (attention_path.hpp): per
// decode length bucket the split, then per prefill row bucket the path and configuration. A
// bucket already in the database costs nothing; with every bucket stored nothing is compiled or
// timed. Otherwise every candidate is compiled alone (kernel store first, on a thread pool: the
// chosen ones are store hits at the next load), and per bucket each candidate is validated
// against the CPU reference on fresh inputs (attention_bench.hpp) before it is timed; a wrong
// one is never timed, so it never wins. Buckets are taken in order (decode first: cheap and every
// generated token runs it) until the deadline; the rest stay undecided (the rule) for a later run.
// Needs a GPU; the autotuner (autotuner.hpp) calls it, and through it q4jit tune and tune_missing.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/autotuner.hpp"

namespace q4jit {

struct AttentionTuneOptions {
  std::vector<int> m_buckets = default_tune_buckets();  // prefill buckets come from these
  bool force = false;           // forget the stored decisions of this geometry first
  int jobs = 0;                 // compile threads; 0: the machine's cores
  int max_copies = 64;          // input copies rotated while timing, at most
  double deadline_seconds = 0;  // no bucket is started after this many seconds; 0: none
  std::function<void(const std::string&)> progress;  // one line per step; null: silent
};

struct AttentionTuneCounters {
  int64_t decided = 0;  // decisions made and stored now
  int64_t from_db = 0;  // decisions found stored
  int64_t validations = 0;
  int64_t timings = 0;  // time_calls measurements, probes included
  double seconds = 0;
};

// One outcome per bucket (DecisionOutcome.projections: "decode" or "prefill"), decode buckets
// first, each list ascending. A read-only database decides nothing and says so.
std::vector<DecisionOutcome> tune_attention(Backend& backend, KernelService& service, TuningDb& db,
                                            const AttentionGeometry& geometry,
                                            const AttentionTuneOptions& options,
                                            AttentionTuneCounters& counters);

}  // namespace q4jit
