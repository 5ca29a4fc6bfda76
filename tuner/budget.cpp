// Shares, compile estimates and halving arithmetic (budget.hpp).
#include "tuner/budget.hpp"

#include <algorithm>
#include <cmath>

namespace q4jit {

void CompileEstimate::record(double seconds) {
  seconds = std::max(seconds, 0.0);
  ++count_;
  total_ += seconds;
  longest_ = std::max(longest_, seconds);
}

TuneBudget::TuneBudget(BudgetPolicy policy, std::vector<double> weights, double elapsed_seconds,
                       double tail_reserve_seconds)
    : policy_(policy), weights_(std::move(weights)) {
  for (double& weight : weights_) weight = std::max(weight, 1e-6);
  weight_left_.assign(weights_.size() + 1, 0.0);
  for (size_t i = weights_.size(); i-- > 0;) weight_left_[i] = weight_left_[i + 1] + weights_[i];
  const double available =
      std::max(0.0, policy_.total_seconds - elapsed_seconds - tail_reserve_seconds);
  for (size_t i = 0; i < weights_.size(); ++i) {
    opening_.push_back(available * weights_[i] / weight_left_[0]);
  }
}

double TuneBudget::share(size_t index, double elapsed_seconds, double tail_reserve_seconds) const {
  if (index >= weights_.size()) return 0;
  const double left = policy_.total_seconds - elapsed_seconds - tail_reserve_seconds;
  double seconds = std::max(0.0, left) * weights_[index] / weight_left_[index];
  seconds = std::max(seconds, policy_.floor_fraction * opening_[index]);
  if (policy_.cap_seconds > 0) seconds = std::min(seconds, policy_.cap_seconds);
  return seconds;
}

namespace {

// Mirrors the halving loop of select_fastest (selection.cpp): rounds and repetitions in all.
void halve(size_t candidates, int finalists, int& rounds, double& repetitions) {
  const size_t keep = size_t(std::max(finalists, 1));
  size_t alive = std::max<size_t>(candidates, 1);
  double per_candidate = 1;
  rounds = 0;
  repetitions = 0;
  do {
    ++rounds;
    repetitions += double(alive) * per_candidate;
    if (alive > keep) alive = std::max(keep, (alive + 1) / 2);
    per_candidate *= 2;
  } while (alive > keep);
}

}  // namespace

int halving_rounds(size_t candidates, int finalists) {
  int rounds = 0;
  double repetitions = 0;
  halve(candidates, finalists, rounds, repetitions);
  return rounds;
}

double halving_repetitions(size_t candidates, int finalists) {
  int rounds = 0;
  double repetitions = 0;
  halve(candidates, finalists, rounds, repetitions);
  return repetitions;
}

size_t first_round_size(double seconds, double repetition_seconds, size_t candidates,
                        int finalists) {
  if (candidates <= 1) return candidates;
  const double repetitions = seconds / std::max(repetition_seconds, 1e-9);
  size_t fits = 1;
  // Halving costs grow with the candidates, so the first that does not fit ends the search.
  for (size_t n = 2; n <= candidates; ++n) {
    if (halving_repetitions(n, finalists) > repetitions) break;
    fits = n;
  }
  return fits;
}

double final_reserve(double repetition_seconds, int finalists) {
  return 2.0 * double(std::max(finalists, 1) + 1) * repetition_seconds;
}

}  // namespace q4jit
