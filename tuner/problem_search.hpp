// One tuning problem (a kernel family's candidates at one shape and M bucket) searched within its
// share of the budget, which is its deadline:
//   1. validation, in the order given (the default first): every candidate that got this far runs
//      once against the reference, for at most `validation_fraction` of the share; a failed one
//      is data (wrong_result, launch_failed, compile_failed) and is never timed;
//   2. a probe: one repetition of the first survivor sizes the first halving round
//      (budget.hpp's first_round_size);
//   3. selection.hpp's halving and interleaved final with the 2% rule, halving stopping at the
//      deadline with the best so far.
// Trials are saved as they finish, so an interrupted tune resumes: a decided trial is not
// validated again, and a stored first-round time stands in for that candidate's first
// measurement. Pure logic over callbacks (clock, validate, measure, save): autotuner.cpp supplies
// the GPU, tests a simulated clock.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "tuner/selection.hpp"

namespace q4jit {

struct SearchCandidate {
  std::string config;
  TrialStatus verdict = TrialStatus::ok;  // not ok: pruned or failed before it could run
  std::string detail;                     // why, when not ok
};

struct SearchHooks {
  std::function<double()> now;  // seconds on a monotonic clock
  // Runs `config` once on the validation inputs against the reference: status ok (with
  // relative_error), wrong_result or launch_failed (with detail). config and rung are set here.
  std::function<TrialRecord(const std::string& config)> validate;
  // Optional: called once before the probe, so the caller can size its measurements.
  std::function<void(const std::string& config)> calibrate;
  MeasureFunction measure;
  std::function<void(const TrialRecord&)> save_trial;  // each trial as it finishes
};

struct SearchOptions {
  double share_seconds = 1;          // the deadline, from the search's start
  double validation_fraction = 0.4;  // of the share; the rest is for timing
  SelectionOptions selection;        // its out_of_time is set by the search
};

struct SearchResult {
  std::optional<Selection> selection;  // nullopt: no candidate matched the reference
  int tried = 0;                       // candidates considered, pruned ones included
  int failed = 0;                      // wrong_result, compile_failed, launch_failed
  int validated = 0;                   // validate calls made now (not resumed)
  int survivors = 0;                   // candidates that matched the reference
  size_t first_round = 0;              // candidates the first halving round timed
  double seconds = 0;                  // from start to the end of the final
};

// stored: trials of this problem already in the database (from an interrupted run).
SearchResult search_problem(const std::vector<SearchCandidate>& candidates,
                            const std::string& default_config,
                            const std::vector<TrialRecord>& stored, const SearchOptions& options,
                            const SearchHooks& hooks);

// The winner row of a finished search (kernel_key left empty: the caller compiles the winner).
WinnerRecord winner_record(const SearchResult& result, const std::string& default_config);

}  // namespace q4jit
