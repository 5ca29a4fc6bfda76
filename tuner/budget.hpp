// The time arithmetic of a tune, kept pure (numbers in, numbers out: no clock, no GPU) so that
// tests replay it on simulated clocks and recorded compile times.
//   - Shares: before each problem, the time actually left is divided among the problems still to
//     run in proportion to their weights, so an early overrun shrinks later shares and an early
//     underrun grows them. No share falls below a floor (a fraction of the problem's opening
//     share): no problem is starved, whatever the ones before it did.
//   - Winner compiles run in the background, off the problems' clocks; the compiles still running
//     when the last problem ends are reserved once for the whole run (not per problem), sized
//     from a running estimate of the compiles measured so far.
//   - Inside a problem: the first halving round is sized so that halving down to the finalists
//     fits what is left of the share after the final rounds; the share is the problem's deadline.
// Not here: measuring, choosing (selection.hpp), the loop that applies it (problem_search.hpp).
#pragma once

#include <cstddef>
#include <vector>

namespace q4jit {

struct BudgetPolicy {
  double total_seconds = 60;           // the whole run, compiling included
  double cap_seconds = 0;              // per problem at most; 0: no cap
  double floor_fraction = 0.25;        // of its opening share, kept by every problem
  double compile_guess_seconds = 1.5;  // a winner compile, until one has been measured
};

// Winner compiles measured so far (store hits included: a winner shared by two buckets is one).
class CompileEstimate {
 public:
  explicit CompileEstimate(double guess_seconds) : guess_(guess_seconds) {}
  void record(double seconds);
  int count() const { return count_; }
  double mean() const { return count_ ? total_ / count_ : guess_; }
  // What the run holds back for the compiles still running at its end: they run side by side,
  // so one compile, the longest seen (the guess until one is measured).
  double tail_reserve() const { return count_ ? longest_ : guess_; }

 private:
  double guess_;
  int count_ = 0;
  double total_ = 0;
  double longest_ = 0;
};

class TuneBudget {
 public:
  // weights: one per problem, in the order they run (1 for a search over a family's space, less
  // for a problem of one candidate). elapsed_seconds: spent before the first problem (finding
  // the problems, compiling candidates); tail_reserve_seconds: as CompileEstimate says then.
  TuneBudget(BudgetPolicy policy, std::vector<double> weights, double elapsed_seconds,
             double tail_reserve_seconds);

  // Seconds problem `index` may take from its start (its deadline), when it starts at
  // `elapsed_seconds` into the run and `tail_reserve_seconds` are held back for the end.
  double share(size_t index, double elapsed_seconds, double tail_reserve_seconds) const;
  // The problem's share had every problem taken exactly its own: the floor is a fraction of it.
  double opening_share(size_t index) const { return opening_[index]; }
  size_t problems() const { return weights_.size(); }

 private:
  BudgetPolicy policy_;
  std::vector<double> weights_;
  std::vector<double> weight_left_;  // sum of weights from index on
  std::vector<double> opening_;
};

// Halving rounds select_fastest runs from `candidates` down to `finalists` (each round times
// every candidate alive, keeps the faster half and doubles the repetitions), and the
// repetitions they take in all (about `candidates` per round).
int halving_rounds(size_t candidates, int finalists);
double halving_repetitions(size_t candidates, int finalists);

// How many candidates the first round may take when `seconds` are left for halving and one
// repetition costs `repetition_seconds`: the most whose halving fits; at least 1 (the default,
// first in order), at most `candidates`.
size_t first_round_size(double seconds, double repetition_seconds, size_t candidates,
                        int finalists);

// What the interleaved final needs when out of time: two rounds of the finalists and the
// default.
double final_reserve(double repetition_seconds, int finalists);

}  // namespace q4jit
