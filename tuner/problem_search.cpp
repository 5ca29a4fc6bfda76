// Validation, probe, halving and final of one problem within its deadline (problem_search.hpp).
#include "tuner/problem_search.hpp"

#include <map>

#include "tuner/budget.hpp"

namespace q4jit {

namespace {

bool is_failure(TrialStatus status) {
  return status == TrialStatus::wrong_result || status == TrialStatus::compile_failed ||
         status == TrialStatus::launch_failed;
}

class Search {
 public:
  Search(const std::vector<TrialRecord>& stored, const SearchOptions& options,
         const SearchHooks& hooks)
      : options_(options), hooks_(hooks), start_(hooks.now()) {
    for (const TrialRecord& trial : stored) stored_[trial.config] = trial;
  }

  std::vector<std::string> validate(const std::vector<SearchCandidate>& candidates);
  void select(std::vector<std::string> survivors, const std::string& default_config);
  SearchResult result() {
    result_.seconds = elapsed();
    return result_;
  }

 private:
  double elapsed() const { return hooks_.now() - start_; }
  void record(const TrialRecord& trial) {
    if (!stored_.count(trial.config)) hooks_.save_trial(trial);  // saved as it finishes
    stored_[trial.config] = trial;
  }
  std::vector<double> measure(const std::string& config, int repetitions);

  const SearchOptions& options_;
  const SearchHooks& hooks_;
  const double start_;
  std::map<std::string, TrialRecord> stored_;
  std::map<std::string, bool> measured_;  // a stored first round stands in only once
  SearchResult result_;
};

std::vector<std::string> Search::validate(const std::vector<SearchCandidate>& candidates) {
  std::vector<std::string> survivors;
  const double limit = options_.validation_fraction * options_.share_seconds;
  for (const SearchCandidate& candidate : candidates) {
    if (result_.tried > 0 && elapsed() > limit) break;
    ++result_.tried;
    const auto previous = stored_.find(candidate.config);
    if (previous != stored_.end()) {  // resumed: decided in an earlier run
      if (previous->second.status == TrialStatus::ok) survivors.push_back(candidate.config);
      result_.failed += is_failure(previous->second.status);
      continue;
    }
    TrialRecord trial;
    if (candidate.verdict != TrialStatus::ok) {
      trial.status = candidate.verdict;
      trial.detail = candidate.detail;
    } else {
      trial = hooks_.validate(candidate.config);
      ++result_.validated;
    }
    trial.config = candidate.config;
    trial.rung = 0;
    if (trial.status == TrialStatus::ok) survivors.push_back(candidate.config);
    result_.failed += is_failure(trial.status);
    record(trial);
  }
  result_.survivors = int(survivors.size());
  return survivors;
}

std::vector<double> Search::measure(const std::string& config, int repetitions) {
  const TrialRecord known = stored_[config];
  const bool first = !measured_[config];
  measured_[config] = true;
  if (first && known.rung >= 1 && known.median_us > 0) {
    return std::vector<double>(size_t(repetitions), known.median_us);
  }
  std::vector<double> samples = hooks_.measure(config, repetitions);
  if (known.rung == 0) {  // its first measurement: saved at once so an interrupted tune resumes
    TrialRecord timed = known;
    const SampleSummary summary = summarize(samples);
    timed.median_us = summary.median_us;
    timed.min_us = summary.min_us;
    timed.p90_us = summary.p90_us;
    timed.repetitions = summary.repetitions;
    timed.rung = 1;
    hooks_.save_trial(timed);
    stored_[config] = timed;
  }
  return samples;
}

void Search::select(std::vector<std::string> survivors, const std::string& default_config) {
  if (survivors.empty()) return;
  SelectionOptions selection = options_.selection;
  if (hooks_.calibrate) hooks_.calibrate(survivors.front());
  const double probe_start = hooks_.now();
  hooks_.measure(survivors.front(), 1);
  const double repetition = hooks_.now() - probe_start;
  const double reserve = final_reserve(repetition, selection.finalists);
  const double left = options_.share_seconds - elapsed() - reserve;
  result_.first_round = first_round_size(left, repetition, survivors.size(), selection.finalists);
  survivors.resize(result_.first_round);  // the default stays: it is first
  selection.out_of_time = [&] { return elapsed() + reserve > options_.share_seconds; };
  result_.selection = select_fastest(
      survivors, default_config,
      [&](const std::string& config, int repetitions) { return measure(config, repetitions); },
      selection);
  for (const CandidateTiming& timing : result_.selection->timings) {
    TrialRecord trial = stored_[timing.config];
    trial.median_us = timing.summary.median_us;
    trial.min_us = timing.summary.min_us;
    trial.p90_us = timing.summary.p90_us;
    trial.repetitions = timing.summary.repetitions;
    trial.rung = std::max(trial.rung, timing.rung);
    hooks_.save_trial(trial);
    stored_[timing.config] = trial;
  }
}

}  // namespace

SearchResult search_problem(const std::vector<SearchCandidate>& candidates,
                            const std::string& default_config,
                            const std::vector<TrialRecord>& stored, const SearchOptions& options,
                            const SearchHooks& hooks) {
  Search search(stored, options, hooks);
  search.select(search.validate(candidates), default_config);
  return search.result();
}

WinnerRecord winner_record(const SearchResult& result, const std::string& default_config) {
  WinnerRecord winner;
  winner.default_config = default_config;
  winner.candidates_tried = result.tried;
  winner.candidates_failed = result.failed;
  winner.tuning_seconds = result.seconds;
  if (!result.selection) return winner;
  const Selection& selection = *result.selection;
  winner.config = selection.winner;
  winner.median_us = selection.winner_final.median_us;
  winner.min_us = selection.winner_final.min_us;
  winner.p90_us = selection.winner_final.p90_us;
  winner.repetitions = selection.winner_final.repetitions;
  winner.default_us = selection.default_final ? selection.default_final->median_us : 0;
  return winner;
}

}  // namespace q4jit
