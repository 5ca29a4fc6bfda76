// The autotuner for the q4_matmul family: for each weight shape and M bucket missing from the
// tuning database, enumerate the family's space, prune, compile (store first, on a thread pool),
// prune again, then per problem within its fair share of the budget (validation, timing and the
// winner's compile all counted): validate candidates against the CPU reference, time a first
// round sized from one measured repetition, halve (selection.hpp), and store trials as they finish
// and the winner with its compiled-kernel key (a problem the budget never reached keeps the
// default, stored too). A problem already in the database costs nothing: no
// compile, no timing. Needs a GPU (a Backend); the pieces it composes are tested without one.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/candidates.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

// One distinct weight shape of a model and the projections that have it ("q,o" or "qkv").
struct TuneShape {
  std::string projections;
  MatmulShapeKey shape;
};

struct TuneOptions {
  double budget_seconds = 60;    // the whole run, compiling included
  double shape_cap_seconds = 0;  // per problem (shape x bucket); 0: the fair share alone
  std::vector<int> m_buckets = {1, 2, 4, 8, 16};
  bool force = false;          // forget stored winners and trials of these problems first
  int jobs = 0;                // compile threads; 0: the machine's cores
  int max_weight_copies = 64;  // rotation cap: tiny models' weights live in L2 anyway
  PostCompileLimits limits;
  std::function<void(const std::string&)> progress;  // one line per step; null: silent
};

struct ProblemOutcome {
  TuningKey key;
  std::string projections;
  bool from_db = false;       // found in the database, nothing done
  bool tuned = false;         // a winner was chosen and stored now
  bool default_kept = false;  // the 2% rule kept the default
  std::string skipped;  // why not tuned (budget: the default stored; no valid candidate); or empty
  WinnerRecord winner;  // valid when from_db or tuned
};

struct TuneCounters {
  int64_t problems = 0;
  int64_t from_db = 0;
  int64_t tuned = 0;
  int64_t validations = 0;  // candidate launches checked against the reference
  int64_t timings = 0;      // time_calls measurements (graph timings), ceiling included
  double seconds = 0;
};

class Autotuner {
 public:
  Autotuner(Backend& backend, KernelService& service, TuningDb& db, TuneOptions options);
  std::vector<ProblemOutcome> tune(const std::vector<TuneShape>& shapes);
  const TuneCounters& counters() const { return counters_; }

 private:
  Backend& backend_;
  KernelService& service_;
  TuningDb& db_;
  TuneOptions options_;
  TuneCounters counters_;
};

}  // namespace q4jit
