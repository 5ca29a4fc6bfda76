// Choosing the fastest of the candidates that passed validation, from repeated timings: successive
// halving (time everyone briefly, keep the faster half, time the rest longer, repeat), then the
// top three and the default re-timed interleaved so they see the same clocks and neighbours, and
// the 2% rule: a winner must beat the default by more than 2% (differences below that are noise
// on the H100, ../shared/docs/BENCHMARK.md), else the default stays.
// Pure logic over a timing callback: no GPU here (tuner/autotuner.cpp supplies the timings), so
// tests run it on recorded timing tables.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace q4jit {

// Per-call microseconds of `repetitions` repetitions of candidate `config` (one value each).
using MeasureFunction =
    std::function<std::vector<double>(const std::string& config, int repetitions)>;

struct SelectionOptions {
  int first_repetitions = 1;    // repetitions per candidate in the first round; doubles per round
  int finalists = 3;            // halving stops at this many; they are re-timed interleaved
  int final_rounds = 6;         // interleaved rounds of the finalists and the default
  double required_gain = 0.02;  // the 2% rule
  // Asked between measurements; when it answers true, halving stops and the final round runs
  // on the best so far (the final round always runs, once, so a winner is always measured).
  std::function<bool()> out_of_time;
};

struct SampleSummary {
  double median_us = 0;
  double min_us = 0;
  double p90_us = 0;  // nearest rank
  int repetitions = 0;
};
SampleSummary summarize(std::vector<double> samples);

struct CandidateTiming {
  std::string config;
  int rung = 0;                    // halving rounds it took part in (final round included)
  std::vector<double> samples_us;  // every repetition, halving rounds first
  SampleSummary summary;           // over all samples
};

struct Selection {
  std::string winner;          // the chosen configuration (the default when the 2% rule kept it)
  bool default_kept = false;   // a candidate was faster, but by 2% or less
  std::string fastest;         // the fastest finalist, before the 2% rule
  SampleSummary winner_final;  // the winner's final interleaved rounds
  std::optional<SampleSummary> default_final;  // the default's, when it survived validation
  std::vector<CandidateTiming> timings;        // one per survivor, in the order given
  int measurements = 0;                        // calls of the measure function
};

// survivors: validated candidates (the default among them when it validated). Returns nullopt
// when there is none.
std::optional<Selection> select_fastest(const std::vector<std::string>& survivors,
                                        const std::string& default_config,
                                        const MeasureFunction& measure,
                                        const SelectionOptions& options = {});

}  // namespace q4jit
