// Successive halving, the interleaved final and the 2% rule (selection.hpp).
#include "tuner/selection.hpp"

#include <algorithm>
#include <cmath>

namespace q4jit {

namespace {

struct Contender {
  CandidateTiming timing;
  std::vector<double> final_samples;
};

double median_of(std::vector<double> values) {
  return summarize(std::move(values)).median_us;
}

bool out_of_time(const SelectionOptions& options) {
  return options.out_of_time && options.out_of_time();
}

// Indices of `alive` sorted by the median of everything measured so far, fastest first.
void rank(std::vector<size_t>& alive, const std::vector<Contender>& contenders) {
  std::stable_sort(alive.begin(), alive.end(), [&](size_t a, size_t b) {
    return median_of(contenders[a].timing.samples_us) < median_of(contenders[b].timing.samples_us);
  });
}

}  // namespace

SampleSummary summarize(std::vector<double> samples) {
  SampleSummary summary;
  summary.repetitions = static_cast<int>(samples.size());
  if (samples.empty()) return summary;
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  summary.min_us = samples.front();
  summary.median_us = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  const size_t rank90 = static_cast<size_t>(std::ceil(0.9 * double(n)));
  summary.p90_us = samples[std::max<size_t>(rank90, 1) - 1];
  return summary;
}

std::optional<Selection> select_fastest(const std::vector<std::string>& survivors,
                                        const std::string& default_config,
                                        const MeasureFunction& measure,
                                        const SelectionOptions& options) {
  if (survivors.empty()) return std::nullopt;
  Selection selection;
  std::vector<Contender> contenders(survivors.size());
  std::vector<size_t> alive;
  for (size_t i = 0; i < survivors.size(); ++i) {
    contenders[i].timing.config = survivors[i];
    alive.push_back(i);
  }
  auto run = [&](size_t index, int repetitions, std::vector<double>& into) {
    const std::vector<double> samples = measure(contenders[index].timing.config, repetitions);
    ++selection.measurements;
    into.insert(into.end(), samples.begin(), samples.end());
    contenders[index].timing.samples_us.insert(contenders[index].timing.samples_us.end(),
                                               samples.begin(), samples.end());
  };

  // Halving rounds: everyone alive is timed, the faster half goes on with twice the repetitions.
  const size_t finalists = static_cast<size_t>(std::max(options.finalists, 1));
  int repetitions = std::max(options.first_repetitions, 1);
  bool first_round = true;
  while (first_round || (alive.size() > finalists && !out_of_time(options))) {
    std::vector<double> ignored;
    for (size_t index : alive) {
      // The first round times everyone even when out of time: an untimed candidate cannot rank.
      if (!first_round && out_of_time(options)) break;
      run(index, repetitions, ignored);
      ++contenders[index].timing.rung;
    }
    rank(alive, contenders);
    if (alive.size() > finalists) alive.resize(std::max(finalists, (alive.size() + 1) / 2));
    repetitions *= 2;
    first_round = false;
  }
  if (alive.size() > finalists) alive.resize(finalists);

  // The final: finalists plus the default (when it validated), interleaved, order rotating.
  const auto default_it = std::find(survivors.begin(), survivors.end(), default_config);
  const bool default_valid = default_it != survivors.end();
  if (default_valid) {
    const size_t index = size_t(default_it - survivors.begin());
    if (std::find(alive.begin(), alive.end(), index) == alive.end()) alive.push_back(index);
  }
  const int rounds = std::max(options.final_rounds, 1);
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < alive.size(); ++i) {
      const size_t index = alive[(i + size_t(round)) % alive.size()];
      run(index, 1, contenders[index].final_samples);
    }
    if (round > 0 && out_of_time(options)) break;  // two rounds at least when out of time
  }
  for (size_t index : alive) ++contenders[index].timing.rung;

  size_t fastest = alive.front();
  for (size_t index : alive) {
    if (median_of(contenders[index].final_samples) < median_of(contenders[fastest].final_samples)) {
      fastest = index;
    }
  }
  selection.fastest = contenders[fastest].timing.config;
  selection.winner = selection.fastest;
  selection.winner_final = summarize(contenders[fastest].final_samples);
  if (default_valid) {
    const SampleSummary defaults =
        summarize(contenders[size_t(default_it - survivors.begin())].final_samples);
    selection.default_final = defaults;
    const bool clear_gain =
        defaults.median_us > selection.winner_final.median_us * (1 + options.required_gain);
    if (selection.fastest != default_config && !clear_gain) {
      selection.winner = default_config;
      selection.winner_final = defaults;
      selection.default_kept = true;
    }
  }
  for (Contender& contender : contenders) {
    contender.timing.summary = summarize(contender.timing.samples_us);
    selection.timings.push_back(std::move(contender.timing));
  }
  return selection;
}

}  // namespace q4jit
