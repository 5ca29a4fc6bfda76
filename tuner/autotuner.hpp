// The autotuner for the GPTQ matmul of every weight shape and M bucket missing from the tuning
// database. Per bucket it tunes each path that can run there (the q4_matmul GEMV family up to 16
// rows, the q4_mma tensor-core family and dequantize + gemm_f16 from 16 rows; path_decision.hpp)
// and stores the winner of each, then decides which path runs the bucket (the decisions table,
// read by MatmulChooser); last, per fused shape (qkv, gate_up) and bucket, whether the fused
// matmul beats its parts run separately (projection_fusion.hpp: from the path decisions' times,
// no timing of its own). Given the model's attention geometry, it first decides the attention
// kernels (attention_path_tuner.hpp: the prefill path per row bucket, the decode split per
// length bucket) within its share of the budget. Candidates are enumerated, pruned, compiled (store
// first, on a thread pool) and pruned again up front; then per problem within its share of the
// budget (budget.hpp: re-balanced after every problem, a floor for each) the search of
// problem_search.hpp validates against the CPU reference, times and halves, saving trials as they
// finish. Winners are compiled alone in the background (their store keys are what a warm load
// requests) while the next problems are timed. A problem already in the database costs nothing:
// no compile, no timing. Needs a GPU (a Backend); the pieces it composes are tested without one.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/candidates.hpp"
#include "tuner/matmul_choice.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

// One distinct weight shape of a model and the projections that have it ("q,o" or "qkv").
struct TuneShape {
  std::string projections;
  MatmulShapeKey shape;
};

// The M buckets tuned by default: decode (1), small batches, and the prefill chunks the engine
// runs (its --prefill-chunk, 512 by default, and 2048 for a whole 1,920-token benchmark prompt).
inline std::vector<int> default_tune_buckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048};
}

struct TuneOptions {
  double budget_seconds = 60;    // the whole run, compiling included
  double shape_cap_seconds = 0;  // per problem (shape x bucket x path); 0: the fair share alone
  std::vector<int> m_buckets = default_tune_buckets();
  bool force = false;             // forget stored winners, trials and decisions of these first
  bool whole_gemm_space = false;  // dequant_gemm: every gemm_f16 config, not only the default
  int jobs = 0;                   // compile threads; 0: the machine's cores
  int max_weight_copies = 64;     // rotation cap: tiny models' weights live in L2 anyway
  // The attention decisions start no bucket past this fraction of budget_seconds; the matmul
  // problems share what the attention left.
  double attention_share = 0.25;
  PostCompileLimits limits;
  std::function<void(const std::string&)> progress;  // one line per step; null: silent
};

// One family's search at one shape and M bucket (key.family: q4_matmul, q4_mma, dequant_gemm).
struct ProblemOutcome {
  TuningKey key;
  MatmulPath path = MatmulPath::gemv;
  std::string projections;
  bool from_db = false;       // found in the database, nothing done
  bool tuned = false;         // a winner was chosen and stored now
  bool default_kept = false;  // the 2% rule kept the default
  std::string skipped;  // why not tuned (budget: the default stored; no valid candidate); or empty
  WinnerRecord winner;  // valid when from_db or tuned
};

// The path decision of one shape and M bucket (key.family "matmul_path"), the fusion decision
// of one fused shape and M bucket (key.family "projection_fusion", projections "qkv"), or an
// attention decision (key.family "attention_path" or "attention_split", projections "prefill" or
// "decode"; attention_path.hpp).
struct DecisionOutcome {
  TuningKey key;
  std::string projections;
  // Found in the database with everything it was decided from (every path's winner; for a
  // fusion, the path decisions of the fused shape and its parts): nothing done.
  bool from_db = false;
  bool decided = false;  // decided and stored now
  std::string skipped;   // why not decided (no path has a timed winner), or empty
  DecisionRecord decision;
};

struct TuneCounters {
  int64_t problems = 0;
  int64_t from_db = 0;
  int64_t tuned = 0;
  int64_t validations = 0;  // candidate launches checked against the reference
  int64_t timings = 0;      // time_calls measurements (graph timings), ceiling included
  int64_t decisions = 0;    // path decisions made now
  int64_t decisions_from_db = 0;
  int64_t fusions = 0;  // projection fusion decisions made now (no timing of their own)
  int64_t fusions_from_db = 0;
  int64_t attention = 0;  // attention decisions made now (prefill paths and decode splits)
  int64_t attention_from_db = 0;
  int64_t winner_compiles = 0;  // winners compiled alone in the background (store hits included)
  double seconds = 0;
};

class Autotuner {
 public:
  Autotuner(Backend& backend, KernelService& service, TuningDb& db, TuneOptions options);
  // attention: the model's attention geometry, whose decisions are made first; none: matmul only.
  std::vector<ProblemOutcome> tune(const std::vector<TuneShape>& shapes,
                                   const std::optional<AttentionGeometry>& attention = {});
  const TuneCounters& counters() const { return counters_; }
  // The path decisions of the last tune(), one per shape and bucket, in tuning order.
  const std::vector<DecisionOutcome>& decisions() const { return decisions_; }
  // The fusion decisions of the last tune(), one per fused shape and bucket.
  const std::vector<DecisionOutcome>& fusions() const { return fusions_; }
  // The attention decisions of the last tune(): decode buckets, then prefill buckets.
  const std::vector<DecisionOutcome>& attention() const { return attention_; }

 private:
  Backend& backend_;
  KernelService& service_;
  TuningDb& db_;
  TuneOptions options_;
  TuneCounters counters_;
  std::vector<DecisionOutcome> decisions_;
  std::vector<DecisionOutcome> fusions_;
  std::vector<DecisionOutcome> attention_;
};

}  // namespace q4jit
