// One problem's search (tuner/problem_search.hpp) on a simulated GPU and clock: each validation
// and each repetition advances the clock by a recorded cost, each candidate has a true time with
// fixed-seed noise. Checks the order of work (validation before timing, failures never timed),
// the deadline (halving stops at the share, the best so far wins), the 2% rule, what is saved as
// it finishes, and resuming from stored trials.
#include "tuner/problem_search.hpp"

#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "tuner/budget.hpp"

namespace q4jit {
namespace {

struct SimulatedGpu {
  double clock = 0;
  double validation_cost = 0.01;  // seconds per validation
  double repetition_cost = 0.02;  // seconds per timed repetition
  std::map<std::string, double> true_us;
  std::set<std::string> wrong;  // produce wrong results
  std::vector<std::string> validated, measured;
  std::vector<TrialRecord> saved;
  std::mt19937 rng{7};

  SearchHooks hooks() {
    SearchHooks hooks;
    hooks.now = [this] { return clock; };
    hooks.validate = [this](const std::string& config) {
      clock += validation_cost;
      validated.push_back(config);
      TrialRecord trial;
      if (wrong.count(config)) {
        trial.status = TrialStatus::wrong_result;
        trial.relative_error = 0.5;
        trial.detail = "relative error 5.00e-01 above 2.0e-03";
      } else {
        trial.relative_error = 1e-4;
      }
      return trial;
    };
    hooks.measure = [this](const std::string& config, int repetitions) {
      EXPECT_FALSE(wrong.count(config)) << config << ": a wrong candidate was timed";
      measured.push_back(config);
      std::uniform_real_distribution<double> noise(0.995, 1.005);
      std::vector<double> samples;
      for (int r = 0; r < repetitions; ++r) {
        clock += repetition_cost;
        samples.push_back(true_us.at(config) * noise(rng));
      }
      return samples;
    };
    hooks.save_trial = [this](const TrialRecord& trial) { saved.push_back(trial); };
    return hooks;
  }
};

// n candidates "c0" (the default, true time 20 us) .. "c<n-1>" with random true times.
std::vector<SearchCandidate> space(SimulatedGpu& gpu, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> us(8.0, 30.0);
  std::vector<SearchCandidate> candidates;
  for (int i = 0; i < n; ++i) {
    const std::string name = "c" + std::to_string(i);
    gpu.true_us[name] = i == 0 ? 20.0 : us(rng);
    candidates.push_back({name, TrialStatus::ok, ""});
  }
  return candidates;
}

SearchOptions within(double share) {
  SearchOptions options;
  options.share_seconds = share;
  return options;
}

TEST(ProblemSearch, PicksTheFastestTimedCandidateWithinItsShare) {
  SimulatedGpu gpu;
  const std::vector<SearchCandidate> candidates = space(gpu, 40, 3);
  const SearchResult result = search_problem(candidates, "c0", {}, within(3.0), gpu.hooks());
  ASSERT_TRUE(result.selection);
  EXPECT_EQ(result.tried, 40);
  EXPECT_EQ(result.validated, 40);
  EXPECT_EQ(result.survivors, 40);
  ASSERT_GT(result.first_round, 3u);
  // The winner is the truly fastest of those the first round timed (they are first in order).
  std::string fastest = "c0";
  for (size_t i = 0; i < result.first_round; ++i) {
    if (gpu.true_us[candidates[i].config] < gpu.true_us[fastest]) fastest = candidates[i].config;
  }
  EXPECT_EQ(result.selection->winner, fastest);
  EXPECT_LE(result.seconds, 3.0 + 4 * 4 * gpu.repetition_cost) << "the final may add rounds";
  // Validation came first: every validate before the first measurement.
  EXPECT_EQ(gpu.validated.size(), 40u);
  const WinnerRecord winner = winner_record(result, "c0");
  EXPECT_EQ(winner.config, fastest);
  EXPECT_GT(winner.default_us, winner.median_us * 1.02);
  EXPECT_EQ(winner.candidates_tried, 40);
}

TEST(ProblemSearch, DeadlineCutsValidationAndHalvingKeepingTheBestSoFar) {
  SimulatedGpu gpu;
  const std::vector<SearchCandidate> candidates = space(gpu, 200, 5);
  const double share = 1.0;
  const SearchResult result = search_problem(candidates, "c0", {}, within(share), gpu.hooks());
  ASSERT_TRUE(result.selection);
  EXPECT_LT(result.tried, 200) << "validation stops at 40% of the share";
  EXPECT_LE(result.tried * gpu.validation_cost, 0.4 * share + gpu.validation_cost + 1e-9);
  EXPECT_LE(result.seconds, share + 2 * 4 * gpu.repetition_cost + 1e-9);
  EXPECT_GE(result.first_round, 1u);
  // The winner was timed.
  bool timed = false;
  for (const CandidateTiming& timing : result.selection->timings)
    timed = timed || (timing.config == result.selection->winner && timing.rung > 0);
  EXPECT_TRUE(timed);
}

TEST(ProblemSearch, WithNoTimeLeftTheDefaultIsStillValidatedAndTimed) {
  SimulatedGpu gpu;
  const std::vector<SearchCandidate> candidates = space(gpu, 50, 9);
  const SearchResult result = search_problem(candidates, "c0", {}, within(0.0), gpu.hooks());
  ASSERT_TRUE(result.selection);
  EXPECT_EQ(result.tried, 1);
  EXPECT_EQ(result.first_round, 1u);
  EXPECT_EQ(result.selection->winner, "c0");
}

TEST(ProblemSearch, FailuresAreRecordedNeverTimedAndNeverWin) {
  SimulatedGpu gpu;
  std::vector<SearchCandidate> candidates = space(gpu, 12, 11);
  gpu.true_us["c5"] = 1.0;  // the fastest, but wrong
  gpu.wrong.insert("c5");
  candidates[3].verdict = TrialStatus::pruned_smem;
  candidates[3].detail = "shared memory 300000 > 232448";
  candidates[4].verdict = TrialStatus::compile_failed;
  candidates[4].detail = "nvrtc: error";
  const SearchResult result = search_problem(candidates, "c0", {}, within(5.0), gpu.hooks());
  ASSERT_TRUE(result.selection);
  EXPECT_NE(result.selection->winner, "c5");
  EXPECT_EQ(result.failed, 2) << "wrong_result and compile_failed; pruning is no failure";
  EXPECT_EQ(result.survivors, 9);
  EXPECT_EQ(gpu.validated.size(), 10u) << "pruned and uncompiled candidates never run";
  std::map<std::string, TrialStatus> status;
  for (const TrialRecord& trial : gpu.saved) status[trial.config] = trial.status;
  EXPECT_EQ(status["c5"], TrialStatus::wrong_result);
  EXPECT_EQ(status["c3"], TrialStatus::pruned_smem);
  EXPECT_EQ(status["c4"], TrialStatus::compile_failed);
}

TEST(ProblemSearch, TwoPercentRuleKeepsTheDefault) {
  SimulatedGpu gpu;
  std::vector<SearchCandidate> candidates = space(gpu, 2, 1);
  gpu.true_us["c0"] = 10.0;
  gpu.true_us["c1"] = 9.9;  // 1% faster: noise
  const SearchResult result = search_problem(candidates, "c0", {}, within(2.0), gpu.hooks());
  ASSERT_TRUE(result.selection);
  EXPECT_EQ(result.selection->winner, "c0");
  EXPECT_TRUE(result.selection->default_kept);
}

TEST(ProblemSearch, FirstMeasurementsAreSavedAsTheyFinish) {
  SimulatedGpu gpu;
  const std::vector<SearchCandidate> candidates = space(gpu, 20, 13);
  const SearchResult result = search_problem(candidates, "c0", {}, within(2.0), gpu.hooks());
  ASSERT_TRUE(result.selection);
  // Per config: the validation row (rung 0), its first measurement (rung 1), its final row.
  std::map<std::string, int> first_rounds;
  for (const TrialRecord& trial : gpu.saved) {
    if (trial.rung == 1 && trial.median_us > 0) ++first_rounds[trial.config];
  }
  EXPECT_GE(first_rounds.size(), result.first_round);
}

TEST(ProblemSearch, ResumesFromStoredTrialsWithoutRedoingThem) {
  SimulatedGpu gpu;
  const std::vector<SearchCandidate> candidates = space(gpu, 6, 17);
  std::vector<TrialRecord> stored;
  TrialRecord wrong;
  wrong.config = "c2";
  wrong.status = TrialStatus::wrong_result;
  stored.push_back(wrong);
  TrialRecord timed;
  timed.config = "c1";
  timed.median_us = gpu.true_us["c1"];
  timed.rung = 1;
  stored.push_back(timed);
  TrialRecord validated;
  validated.config = "c0";
  stored.push_back(validated);
  const SearchResult result = search_problem(candidates, "c0", stored, within(5.0), gpu.hooks());
  ASSERT_TRUE(result.selection);
  EXPECT_EQ(gpu.validated, (std::vector<std::string>{"c3", "c4", "c5"}));
  EXPECT_EQ(result.validated, 3);
  EXPECT_EQ(result.failed, 1);
  EXPECT_NE(result.selection->winner, "c2");
}

TEST(ProblemSearch, NoValidCandidateGivesNoSelection) {
  SimulatedGpu gpu;
  const std::vector<SearchCandidate> candidates = space(gpu, 3, 19);
  for (const SearchCandidate& candidate : candidates) gpu.wrong.insert(candidate.config);
  const SearchResult result = search_problem(candidates, "c0", {}, within(1.0), gpu.hooks());
  EXPECT_FALSE(result.selection);
  EXPECT_EQ(result.failed, 3);
  EXPECT_TRUE(gpu.measured.empty());
  EXPECT_TRUE(winner_record(result, "c0").config.empty());
}

}  // namespace
}  // namespace q4jit
