// The budget arithmetic (tuner/budget.hpp) on simulated clocks: shares re-balanced after overruns
// and underruns, the floor, the cap, weights, the compile estimate, and the halving model against
// select_fastest itself. Then the two H100 runs that went wrong, replayed with their recorded
// costs: with the old accounting (re-implemented below as it was) they starve problems, with the
// new one every problem gets time to search and the run ends within its budget.
//   A (7B, 35f698c): the winner-compile reserve was the longest compile seen, inside every
//     problem's share; after one slow compile the reserve exceeded the share and 6 of 25 problems
//     timed only the default.
//   B (fixture on a cold machine, b5d16c2): the reserve was the mean compile; the compiles ran
//     longer than that on the problems' clocks, the overruns added up and the last problems got
//     no time at all (28 of 30 tuned).
#include "tuner/budget.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tuner/selection.hpp"

namespace q4jit {
namespace {

TEST(TuneBudget, SharesRebalanceAfterOverrunsAndUnderruns) {
  BudgetPolicy policy;
  policy.total_seconds = 60;
  const TuneBudget budget(policy, std::vector<double>(10, 1.0), 0.0, 1.5);
  const double fair = (60 - 1.5) / 10;
  EXPECT_NEAR(budget.share(0, 0.0, 1.5), fair, 1e-12);
  EXPECT_NEAR(budget.opening_share(3), fair, 1e-12);
  // Problem 0 took 10 s instead of 5.85: the 9 others share what is left.
  EXPECT_NEAR(budget.share(1, 10.0, 1.5), (60 - 10 - 1.5) / 9, 1e-12);
  EXPECT_LT(budget.share(1, 10.0, 1.5), fair);
  // Problem 0 took 2 s: the others get more.
  EXPECT_GT(budget.share(1, 2.0, 1.5), fair);
  // A longer compile estimate holds more back for the end.
  EXPECT_LT(budget.share(1, 2.0, 4.0), budget.share(1, 2.0, 1.5));
}

TEST(TuneBudget, FloorKeepsEveryProblemAliveAndCapBoundsIt) {
  BudgetPolicy policy;
  policy.total_seconds = 60;
  policy.floor_fraction = 0.25;
  const TuneBudget budget(policy, std::vector<double>(10, 1.0), 20.0, 0.0);
  const double opening = 40.0 / 10;
  EXPECT_NEAR(budget.share(9, 75.0, 0.0), 0.25 * opening, 1e-12) << "budget spent: the floor";
  EXPECT_NEAR(budget.share(8, 59.9, 0.0), 0.25 * opening, 1e-12) << "0.05 s each: the floor";
  policy.cap_seconds = 2.5;
  const TuneBudget capped(policy, std::vector<double>(10, 1.0), 20.0, 0.0);
  EXPECT_DOUBLE_EQ(capped.share(0, 20.0, 0.0), 2.5);
  EXPECT_DOUBLE_EQ(capped.share(5, 20.0, 0.0), 2.5) << "underruns never pass the cap";
  EXPECT_EQ(capped.share(10, 20.0, 0.0), 0.0) << "no such problem";
}

TEST(TuneBudget, WeightsSplitInProportion) {
  BudgetPolicy policy;
  policy.total_seconds = 45;
  const TuneBudget budget(policy, {1.0, 0.25, 1.0, 0.25}, 0.0, 0.0);
  EXPECT_NEAR(budget.share(0, 0.0, 0.0), 45 * 1.0 / 2.5, 1e-12);
  EXPECT_NEAR(budget.share(1, 18.0, 0.0), 27 * 0.25 / 1.5, 1e-12);
  EXPECT_NEAR(budget.opening_share(3), 45 * 0.25 / 2.5, 1e-12);
}

TEST(CompileEstimate, GuessUntilMeasuredThenMeanAndLongest) {
  CompileEstimate estimate(1.5);
  EXPECT_EQ(estimate.count(), 0);
  EXPECT_DOUBLE_EQ(estimate.mean(), 1.5);
  EXPECT_DOUBLE_EQ(estimate.tail_reserve(), 1.5);
  for (double seconds : {1.0, 0.002, 2.6, -1.0}) estimate.record(seconds);
  EXPECT_EQ(estimate.count(), 4);
  EXPECT_NEAR(estimate.mean(), (1.0 + 0.002 + 2.6) / 4, 1e-12) << "a negative time counts as 0";
  EXPECT_DOUBLE_EQ(estimate.tail_reserve(), 2.6);
}

// The halving model must be select_fastest's own loop: run it on n candidates with a clock that
// never runs out and count rounds and repetitions.
TEST(Halving, ModelMatchesSelectFastest) {
  for (size_t n : {1u, 2u, 3u, 4u, 5u, 7u, 8u, 13u, 64u, 145u, 220u}) {
    std::vector<std::string> survivors;
    for (size_t i = 0; i < n; ++i) {
      std::string name = "c";
      survivors.push_back(name += std::to_string(i));
    }
    int repetitions = 0;
    SelectionOptions options;
    options.final_rounds = 0;  // the final is not part of halving: one round still runs
    const auto selection = select_fastest(
        survivors, "c0",
        [&](const std::string& config, int count) {
          repetitions += count;  // the default slowest: cut in the first round when n > 3
          const double us = config == "c0" ? 100.0 : 1.0 + std::stod(config.substr(1));
          return std::vector<double>(size_t(count), us);
        },
        options);
    ASSERT_TRUE(selection);
    const int finals = int(std::min<size_t>(n, 3) + (n > 3 ? 1 : 0));  // finalists + default
    EXPECT_EQ(repetitions - finals, int(halving_repetitions(n, 3))) << n << " candidates";
    int rounds = 0;
    for (const CandidateTiming& timing : selection->timings) rounds = std::max(rounds, timing.rung);
    EXPECT_EQ(rounds - 1, halving_rounds(n, 3)) << n << " candidates (rung counts the final)";
  }
}

TEST(Halving, FirstRoundFitsTheTimeLeft) {
  // 100 repetitions: 25 candidates need 25 + 26 + 28 + 32 = 111, 22 need 22 + 22 + 24 + 24.
  const size_t fits = first_round_size(1.0, 0.01, 145, 3);
  EXPECT_LE(halving_repetitions(fits, 3), 100.0);
  EXPECT_GT(halving_repetitions(fits + 1, 3), 100.0);
  EXPECT_EQ(first_round_size(1.0, 0.01, 10, 3), 10u) << "all fit";
  EXPECT_EQ(first_round_size(-1.0, 0.01, 145, 3), 1u) << "no time: the default alone";
  EXPECT_EQ(first_round_size(1.0, 0.0, 145, 3), 145u) << "free repetitions";
  EXPECT_EQ(first_round_size(1.0, 0.01, 0, 3), 0u);
  EXPECT_DOUBLE_EQ(final_reserve(0.01, 3), 0.08);
}

// ---- replaying whole runs

// A run's recorded costs: what validation, one repetition and each winner compile took.
struct RecordedRun {
  int problems = 0;
  double budget = 60;
  double compile_phase = 0;      // enumerating and compiling candidates, before problem 1
  double validation = 0;         // validating the candidates a share allows, per problem
  double repetition = 0;         // one timed repetition
  size_t candidates = 0;         // validated candidates per problem
  std::vector<double> compiles;  // winner compile per problem (0.002: a store hit)
};

struct ProblemReplay {
  double share = 0;
  size_t first_round = 0;  // 1: only the default was timed
  bool starved = false;    // no time at all: the default stored untimed
};

struct RunReplay {
  std::vector<ProblemReplay> problems;
  double end = 0;  // when the run, background compiles included, finished
  int default_only() const {
    return int(std::count_if(problems.begin(), problems.end(), [](const ProblemReplay& p) {
      return !p.starved && p.first_round <= 1;
    }));
  }
  int starved() const {
    return int(std::count_if(problems.begin(), problems.end(),
                             [](const ProblemReplay& p) { return p.starved; }));
  }
};

// What one problem takes when it searches `first_round` candidates until its deadline: the
// validation (at most 40% of the share), a probe, halving cut at the deadline, and the final
// (six rounds, two when out of time).
double problem_seconds(const RecordedRun& run, double share, size_t first_round,
                       double reserve_inside) {
  const double validation = std::min(run.validation, std::max(0.4 * share, 0.01));
  const double r = run.repetition;
  const double halving_left = share - validation - r - reserve_inside;
  const double halving = std::max(double(first_round) * r,
                                  std::min(halving_repetitions(first_round, 3) * r, halving_left));
  const bool out_of_time = halving_repetitions(first_round, 3) * r > halving_left;
  const double finalists = double(std::min<size_t>(first_round, 3) + (first_round > 3 ? 1 : 0));
  return validation + r + halving + (out_of_time ? 2 : 6) * finalists * r;
}

enum class LegacyReserve { longest, mean };

// The accounting before this change (35f698c, b5d16c2): share = time left / problems left, a
// problem with no time left stores the default untimed, the first round a third of what is left
// after reserving the final and the winner compile, the compile on the problem's own clock.
RunReplay replay_legacy(const RecordedRun& run, LegacyReserve kind) {
  RunReplay replay;
  double clock = run.compile_phase, longest = 0.5, total = 0;
  int measured = 0;
  for (int i = 0; i < run.problems; ++i) {
    ProblemReplay problem;
    const double remaining = run.budget - clock;
    if (remaining <= 0) {
      problem.starved = true;
      replay.problems.push_back(problem);
      continue;
    }
    problem.share = remaining / double(run.problems - i);
    const double compile_reserve =
        kind == LegacyReserve::longest
            ? longest
            : std::min(measured ? total / measured : 0.5, 0.25 * problem.share);
    const double validation = std::min(run.validation, 0.4 * problem.share);
    const double reserve = compile_reserve + final_reserve(run.repetition, 3);
    const double left = problem.share - validation - run.repetition - reserve;
    problem.first_round =
        size_t(std::clamp(std::floor(left / (3 * run.repetition)), 1.0, double(run.candidates)));
    const double compile = run.compiles[size_t(i) % run.compiles.size()];
    clock += problem_seconds(run, problem.share, problem.first_round, reserve) + compile;
    longest = std::max(longest, compile);
    total += compile;
    ++measured;
    replay.problems.push_back(problem);
  }
  replay.end = clock;
  return replay;
}

// The accounting now: TuneBudget's shares, halving sized by first_round_size, the winner
// compile in the background (the run waits for the last ones at its end).
RunReplay replay_budget(const RecordedRun& run) {
  RunReplay replay;
  BudgetPolicy policy;
  policy.total_seconds = run.budget;
  CompileEstimate estimate(policy.compile_guess_seconds);
  const TuneBudget budget(policy, std::vector<double>(size_t(run.problems), 1.0), run.compile_phase,
                          estimate.tail_reserve());
  double clock = run.compile_phase, compiles_done = run.compile_phase;
  for (int i = 0; i < run.problems; ++i) {
    ProblemReplay problem;
    problem.share = budget.share(size_t(i), clock, estimate.tail_reserve());
    const double validation = std::min(run.validation, std::max(0.4 * problem.share, 0.01));
    const double reserve = final_reserve(run.repetition, 3);
    problem.first_round = first_round_size(problem.share - validation - run.repetition - reserve,
                                           run.repetition, run.candidates, 3);
    clock += problem_seconds(run, problem.share, problem.first_round, reserve);
    // Compiles run side by side, each from its problem's end; the estimate learns as they end.
    const double compile = run.compiles[size_t(i) % run.compiles.size()];
    compiles_done = std::max(compiles_done, clock + compile);
    estimate.record(compile);
    replay.problems.push_back(problem);
  }
  replay.end = std::max(clock, compiles_done);
  return replay;
}

// Scenario A: 25 7B problems, kernels in the store (compiled in 0 s), 145 candidates validated in
// about 0.6 s, 6.5 ms a repetition (63 first-round candidates in a 2.39 s share), winner compiles
// of 1.2 to 1.7 s (16 compiles in 23.9 s) with one slow 2.6 s compile early on.
RecordedRun h100_7b() {
  RecordedRun run;
  run.problems = 25;
  run.validation = 0.6;
  run.repetition = 0.0065;
  run.candidates = 145;
  run.compiles = {1.4,   1.6, 2.6, 1.5, 1.3,   0.002, 1.5, 1.7,   1.2, 0.002, 1.4, 1.6,  1.5,
                  0.002, 1.3, 1.5, 1.6, 0.002, 1.4,   1.5, 0.002, 1.2, 1.4,   1.6, 0.002};
  return run;
}

// Scenario B: 30 fixture problems on a cold machine: 21 s compiling the space, 173 candidates
// validated in about 0.3 s, 3 ms a repetition, 18 winner compiles of about 1.1 s (20.5 s), the
// rest store hits.
RecordedRun h100_fixture_cold() {
  RecordedRun run;
  run.problems = 30;
  run.compile_phase = 21;
  run.validation = 0.3;
  run.repetition = 0.003;
  run.candidates = 173;
  run.compiles = {1.1,   1.2, 1.0, 1.1,   0.002, 1.2, 1.1,   1.0,   1.3, 0.002,
                  1.1,   1.2, 1.1, 0.002, 1.0,   1.1, 1.2,   0.002, 1.1, 1.0,
                  0.002, 1.1, 1.2, 0.002, 1.1,   1.0, 0.002, 1.2,   1.1, 0.002};
  return run;
}

void print(const char* name, const RunReplay& replay) {
  size_t fewest = SIZE_MAX;
  for (const ProblemReplay& p : replay.problems)
    if (!p.starved) fewest = std::min(fewest, p.first_round);
  std::printf(
      "%-8s %2d default only, %2d starved, fewest timed %zu, shares %.2f .. %.2f s, "
      "ends at %.1f s\n",
      name, replay.default_only(), replay.starved(), fewest, replay.problems.front().share,
      replay.problems.back().share, replay.end);
}

// Every problem searched (more than the default timed, none starved), shares never below the
// floor, the run within its budget plus one final round's overrun.
void expect_fair(const RecordedRun& run, const RunReplay& replay) {
  const double opening = (run.budget - run.compile_phase - 1.5) / run.problems;
  for (size_t i = 0; i < replay.problems.size(); ++i) {
    const ProblemReplay& problem = replay.problems[i];
    EXPECT_FALSE(problem.starved) << "problem " << i;
    EXPECT_GT(problem.first_round, 1u) << "problem " << i << ": only the default timed";
    EXPECT_GE(problem.share, 0.25 * opening - 1e-9) << "problem " << i;
  }
  EXPECT_LE(replay.end, run.budget + 0.5);
}

TEST(BudgetReplay, H100SevenBLongestCompileReserveTimedOnlyDefaults) {
  const RecordedRun run = h100_7b();
  const RunReplay legacy = replay_legacy(run, LegacyReserve::longest);
  EXPECT_GE(legacy.default_only(), 5) << "the scenario reproduces the H100 run (6 of 25)";
  const RunReplay now = replay_budget(run);
  print("legacy", legacy);
  print("now", now);
  EXPECT_EQ(now.default_only(), 0);
  EXPECT_EQ(now.starved(), 0);
  expect_fair(run, now);
}

TEST(BudgetReplay, H100FixtureColdMeanCompileReserveStarvedTheLast) {
  const RecordedRun run = h100_fixture_cold();
  const RunReplay legacy = replay_legacy(run, LegacyReserve::mean);
  EXPECT_GE(legacy.starved(), 1) << "the scenario reproduces the H100 run (28 of 30)";
  EXPECT_GT(legacy.end, run.budget);
  const RunReplay now = replay_budget(run);
  print("legacy", legacy);
  print("now", now);
  EXPECT_EQ(now.starved(), 0);
  expect_fair(run, now);
  // Shares stay even: the last problem's is within a few percent of the first one's.
  EXPECT_NEAR(now.problems.back().share, now.problems.front().share,
              0.1 * now.problems.front().share);
}

// Even when every problem overruns its share by half (a slow GPU, a bad estimate), the shares
// shrink evenly and the last problems keep their floor.
TEST(BudgetReplay, OverrunsShrinkLaterSharesDownToTheFloorOnly) {
  BudgetPolicy policy;
  policy.total_seconds = 60;
  const int problems = 30;
  const TuneBudget budget(policy, std::vector<double>(problems, 1.0), 10.0, 1.5);
  double clock = 10;
  double previous = budget.share(0, clock, 1.5);
  for (int i = 0; i < problems; ++i) {
    const double share = budget.share(size_t(i), clock, 1.5);
    EXPECT_GE(share, 0.25 * budget.opening_share(size_t(i)) - 1e-12) << i;
    EXPECT_LE(share, previous + 1e-12) << i << ": overruns only ever shrink the shares";
    previous = share;
    clock += 1.5 * share;
  }
  EXPECT_GT(budget.share(problems - 1, clock, 1.5), 0.0);
}

}  // namespace
}  // namespace q4jit
