// Selection on recorded timing tables: successive halving finds the fastest while timing the slow
// ones least, the final is interleaved, the 2% rule keeps the default, a wrong default leaves the
// choice to the timings, and a budget cut still yields a measured winner.
#include "tuner/selection.hpp"

#include <map>
#include <random>

#include <gtest/gtest.h>

namespace q4jit {
namespace {

// Per-config timings replayed in order (cycling), with a log of what was measured when.
class RecordedTimings {
 public:
  explicit RecordedTimings(std::map<std::string, std::vector<double>> table)
      : table_(std::move(table)) {}

  MeasureFunction function() {
    return [this](const std::string& config, int repetitions) {
      std::vector<double> samples;
      for (int i = 0; i < repetitions; ++i) {
        const std::vector<double>& recorded = table_.at(config);
        samples.push_back(recorded[position_[config]++ % recorded.size()]);
      }
      repetitions_[config] += repetitions;
      order_.push_back(config);
      return samples;
    };
  }
  int repetitions(const std::string& config) const {
    const auto it = repetitions_.find(config);
    return it == repetitions_.end() ? 0 : it->second;
  }
  const std::vector<std::string>& order() const { return order_; }

 private:
  std::map<std::string, std::vector<double>> table_;
  std::map<std::string, size_t> position_;
  std::map<std::string, int> repetitions_;
  std::vector<std::string> order_;
};

// 16 configs "c00".."c15" with true times 20 + i us and +-1% noise, fixed seed; c00 fastest.
std::map<std::string, std::vector<double>> sixteen_configs(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> noise(0.99, 1.01);
  std::map<std::string, std::vector<double>> table;
  for (int i = 0; i < 16; ++i) {
    const std::string name = (i < 10 ? "c0" : "c") + std::to_string(i);
    for (int s = 0; s < 64; ++s) table[name].push_back((20.0 + i) * noise(rng));
  }
  return table;
}

std::vector<std::string> names_of(const std::map<std::string, std::vector<double>>& table) {
  std::vector<std::string> names;
  for (const auto& [name, samples] : table) names.push_back(name);
  return names;
}

TEST(Selection, HalvingFindsTheFastestAndTimesTheSlowOnesLeast) {
  const auto table = sixteen_configs(3);
  RecordedTimings timings(table);
  std::vector<std::string> survivors = names_of(table);
  std::shuffle(survivors.begin(), survivors.end(), std::mt19937(9));
  const auto selection = select_fastest(survivors, "c15", timings.function());
  ASSERT_TRUE(selection.has_value());
  EXPECT_EQ(selection->winner, "c00");
  EXPECT_FALSE(selection->default_kept);
  // Rounds of 16, 8, 4 candidates: the slowest half got one repetition, the finalists many.
  EXPECT_EQ(timings.repetitions("c12"), 1);
  EXPECT_GE(timings.repetitions("c00"), 1 + 2 + 4 + 6);
  EXPECT_GE(timings.repetitions("c15"), 1 + 6);  // the default always reaches the final
  EXPECT_NEAR(selection->winner_final.median_us, 20.0, 0.2);
  EXPECT_NEAR(selection->default_final->median_us, 35.0, 0.4);
  EXPECT_EQ(selection->timings.size(), 16u);
}

TEST(Selection, FinalRoundsAreInterleavedWithRotatingOrder) {
  const auto table = sixteen_configs(4);
  RecordedTimings timings(table);
  SelectionOptions options;
  options.final_rounds = 4;
  const auto selection = select_fastest(names_of(table), "c08", timings.function(), options);
  ASSERT_TRUE(selection.has_value());
  // The last 4 rounds x 4 contenders (3 finalists + default) are single repetitions, each
  // round holding every contender once, starting from a different one each time.
  const std::vector<std::string>& order = timings.order();
  ASSERT_GE(order.size(), 16u);
  std::vector<std::string> firsts;
  for (size_t round = 0; round < 4; ++round) {
    std::vector<std::string> members(order.end() - 16 + 4 * round, order.end() - 12 + 4 * round);
    firsts.push_back(members.front());
    std::sort(members.begin(), members.end());
    EXPECT_EQ(members, (std::vector<std::string>{"c00", "c01", "c02", "c08"}));
  }
  std::sort(firsts.begin(), firsts.end());
  EXPECT_EQ(std::unique(firsts.begin(), firsts.end()) - firsts.begin(), 4);
}

TEST(Selection, TwoPercentRuleKeepsTheDefault) {
  // "fast" is 1.5% faster than the default: noise by the rule, the default stays.
  RecordedTimings close(
      {{"default", {100.0, 100.2, 99.8}}, {"fast", {98.5, 98.6, 98.4}}, {"slow", {130.0}}});
  const auto kept = select_fastest({"default", "fast", "slow"}, "default", close.function());
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->fastest, "fast");
  EXPECT_EQ(kept->winner, "default");
  EXPECT_TRUE(kept->default_kept);
  EXPECT_NEAR(kept->winner_final.median_us, 100.0, 0.3);

  // 3% faster: the candidate wins.
  RecordedTimings clear(
      {{"default", {100.0, 100.2, 99.8}}, {"fast", {97.0, 97.1, 96.9}}, {"slow", {130.0}}});
  const auto chosen = select_fastest({"default", "fast", "slow"}, "default", clear.function());
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(chosen->winner, "fast");
  EXPECT_FALSE(chosen->default_kept);
  EXPECT_NEAR(chosen->winner_final.median_us, 97.0, 0.2);
}

TEST(Selection, WithoutAValidDefaultTheFastestWins) {
  RecordedTimings timings({{"a", {50.0}}, {"b", {49.5}}});
  const auto selection = select_fastest({"a", "b"}, "default-that-failed", timings.function());
  ASSERT_TRUE(selection.has_value());
  EXPECT_EQ(selection->winner, "b");  // 1% apart, but there is no default to keep
  EXPECT_FALSE(selection->default_final.has_value());
  EXPECT_FALSE(select_fastest({}, "a", timings.function()).has_value());
}

TEST(Selection, OutOfTimeStopsHalvingButStillMeasuresAFinal) {
  const auto table = sixteen_configs(5);
  RecordedTimings timings(table);
  SelectionOptions options;
  int checks = 0;
  options.out_of_time = [&] { return ++checks > 0; };  // out of time from the start
  const auto selection = select_fastest(names_of(table), "c03", timings.function(), options);
  ASSERT_TRUE(selection.has_value());
  EXPECT_EQ(selection->winner, "c00");
  for (const CandidateTiming& timing : selection->timings) {
    EXPECT_GE(timing.rung, 1) << timing.config;  // everyone was timed once
  }
  EXPECT_LE(timings.repetitions("c00"), 1 + 2);  // one halving round, two final rounds
  EXPECT_EQ(selection->winner_final.repetitions, 2);
}

TEST(Selection, AnOutlierDoesNotDecideWithThreeFirstRepetitions) {
  // "b" is truly fastest but its first sample is an outlier: the median of three recovers it.
  std::map<std::string, std::vector<double>> table = {
      {"a", {30, 30, 30, 30}}, {"b", {45, 25, 25, 25}}, {"c", {31, 31, 31, 31}},
      {"d", {32, 32, 32, 32}}, {"e", {33, 33, 33, 33}}, {"f", {34, 34, 34, 34}}};
  SelectionOptions options;
  options.first_repetitions = 3;
  RecordedTimings timings(table);
  const auto selection = select_fastest(names_of(table), "a", timings.function(), options);
  ASSERT_TRUE(selection.has_value());
  EXPECT_EQ(selection->winner, "b");
  // With one first repetition the outlier puts b last and out in round one.
  RecordedTimings hasty(table);
  const auto hasty_selection = select_fastest(names_of(table), "a", hasty.function());
  EXPECT_EQ(hasty_selection->winner, "a");
  EXPECT_EQ(hasty.repetitions("b"), 1);
}

TEST(Selection, SummaryStatistics) {
  const SampleSummary summary = summarize({5, 1, 4, 2, 3, 10, 6, 7, 8, 9});
  EXPECT_DOUBLE_EQ(summary.min_us, 1);
  EXPECT_DOUBLE_EQ(summary.median_us, 5.5);
  EXPECT_DOUBLE_EQ(summary.p90_us, 9);
  EXPECT_EQ(summary.repetitions, 10);
  EXPECT_DOUBLE_EQ(summarize({7}).p90_us, 7);
}

}  // namespace
}  // namespace q4jit
