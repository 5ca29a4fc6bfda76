// Sampler: greedy and the filters as properties that a wrong implementation fails (argmax, top-k
// of 1, tiny top-p, min-p never drawing a token below the threshold, typical keeping the tokens
// nearest the entropy), the repetition penalty on exact logit values, seeding, and empirical
// frequencies against softmax(logits / T).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "model/sampling.hpp"

namespace q4jit {
namespace {

std::vector<float> random_logits(size_t vocab, uint32_t seed, float scale = 3.0f) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(vocab);
  for (float& logit : logits) logit = normal(random);
  return logits;
}

int32_t argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Draws `count` tokens, each from a fresh copy of the logits (the sampler edits them in place).
std::vector<int32_t> draw(Sampler& sampler, const std::vector<float>& logits, int count,
                          const std::vector<int32_t>& history = {}) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < count; ++i) {
    std::vector<float> copy = logits;
    tokens.push_back(sampler.sample(copy, history));
  }
  return tokens;
}

SamplingParams unfiltered(float temperature, uint64_t seed) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = 0;
  params.top_p = 1.0f;
  params.seed = seed;
  return params;
}

TEST(Sampler, GreedyIsArgmax) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const auto logits = random_logits(32000, seed);
    SamplingParams greedy;
    greedy.greedy = true;
    Sampler sampler(greedy);
    EXPECT_EQ(draw(sampler, logits, 1)[0], argmax(logits));
    SamplingParams cold = unfiltered(0.0f, seed);  // temperature <= 0 means greedy too
    Sampler cold_sampler(cold);
    EXPECT_EQ(draw(cold_sampler, logits, 1)[0], argmax(logits));
  }
}

TEST(Sampler, TopKOfOneIsArgmaxForAnySeed) {
  const auto logits = random_logits(32000, 3, 0.5f);  // flat: many tokens would be likely
  for (uint64_t seed = 0; seed < 50; ++seed) {
    SamplingParams params = unfiltered(1.5f, seed);
    params.top_k = 1;
    Sampler sampler(params);
    EXPECT_EQ(draw(sampler, logits, 1)[0], argmax(logits)) << "seed " << seed;
  }
}

TEST(Sampler, TinyTopPIsArgmax) {
  const auto logits = random_logits(4096, 4, 0.5f);
  SamplingParams params = unfiltered(1.0f, 9);
  params.top_p = 1e-6f;
  Sampler sampler(params);
  for (const int32_t token : draw(sampler, logits, 200)) EXPECT_EQ(token, argmax(logits));
}

TEST(Sampler, TopKDrawsOnlyTheKLargest) {
  const auto logits = random_logits(32000, 5, 0.3f);
  std::vector<float> sorted = logits;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  SamplingParams params = unfiltered(1.0f, 11);
  params.top_k = 5;
  Sampler sampler(params);
  std::map<int32_t, int> seen;
  for (const int32_t token : draw(sampler, logits, 2000)) {
    EXPECT_GE(logits[token], sorted[4]);
    ++seen[token];
  }
  EXPECT_EQ(seen.size(), 5u);  // flat logits: all five show up
}

TEST(Sampler, MinPNeverDrawsATokenBelowTheThreshold) {
  // Probabilities proportional to 8, 4, 2, 1, 0.5, ...: min_p 0.2 keeps those >= 1.6, i.e. 3.
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = -static_cast<float>(i) * std::log(2.0f);
  SamplingParams params = unfiltered(1.0f, 13);
  params.min_p = 0.2f;
  Sampler sampler(params);
  std::map<int32_t, int> counts;
  for (const int32_t token : draw(sampler, logits, 20000)) ++counts[token];
  EXPECT_EQ(counts.size(), 3u);
  EXPECT_GT(counts[2], 0);
  EXPECT_EQ(counts.count(3), 0u);
  // Renormalized over {8, 4, 2}: token 0 has probability 4/7.
  EXPECT_NEAR(counts[0] / 20000.0, 4.0 / 7.0, 0.02);
}

TEST(Sampler, TypicalKeepsTokensNearestTheEntropy) {
  // Token 7 has p = 0.4 (surprise 0.92), sixty others p = 0.01 each (surprise 4.61); the entropy
  // is 3.13, so the small ones are the typical ones and a mass of 0.095 keeps ten of them only.
  std::vector<float> logits(61, std::log(0.01f));
  logits[7] = std::log(0.4f);
  SamplingParams params = unfiltered(1.0f, 17);
  params.typical = 0.095f;
  Sampler sampler(params);
  std::map<int32_t, int> counts;
  for (const int32_t token : draw(sampler, logits, 2000)) ++counts[token];
  EXPECT_EQ(counts.count(7), 0u);
  EXPECT_EQ(counts.size(), 10u);
  // Without the filter token 7 is drawn 40% of the time.
  Sampler plain(unfiltered(1.0f, 17));
  const auto tokens = draw(plain, logits, 2000);
  EXPECT_NEAR(std::count(tokens.begin(), tokens.end(), 7) / 2000.0, 0.4, 0.05);
}

TEST(Sampler, RepetitionPenaltyExactLogits) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  SamplingParams params;
  params.greedy = true;
  params.repetition_penalty = 2.0f;
  params.repetition_range = 3;
  Sampler sampler(params);
  // Window of the last 3 tokens: {3, 1, 3}; token 0 and 4 are outside it. Each distinct token is
  // penalized once, although 3 occurs twice.
  const std::vector<int32_t> history = {0, 4, 3, 1, 3};
  const int32_t token = sampler.sample(logits, history);
  EXPECT_EQ(logits, (std::vector<float>{2.0f, -2.0f, 0.5f, 1.5f, -2.0f, 1.0f}));
  EXPECT_EQ(token, 0);  // 3.0 was the argmax, 1.5 after the penalty
  // Range 0 means the whole history.
  std::vector<float> again = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  params.repetition_range = 0;
  Sampler whole(params);
  whole.sample(again, history);
  EXPECT_EQ(again, (std::vector<float>{1.0f, -2.0f, 0.5f, 1.5f, -4.0f, 1.0f}));
}

TEST(Sampler, RepetitionPenaltyLowersARepeatedTokensFrequency) {
  const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  SamplingParams params = unfiltered(1.0f, 21);
  params.repetition_penalty = 1.5f;
  Sampler sampler(params);
  const auto tokens = draw(sampler, logits, 8000, {2, 2, 2});
  // Token 2's logit becomes 1/1.5: p = e^(2/3) / (e^(2/3) + 3e) = 0.194 instead of 0.25.
  const double frequency = std::count(tokens.begin(), tokens.end(), 2) / 8000.0;
  EXPECT_NEAR(frequency, std::exp(2.0 / 3) / (std::exp(2.0 / 3) + 3 * std::exp(1.0)), 0.015);
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDifferent) {
  const auto logits = random_logits(32000, 6, 0.5f);
  SamplingParams params;  // defaults: temperature 0.8, top-k 40, top-p 0.95
  params.seed = 1234;
  Sampler first(params), second(params);
  const auto a = draw(first, logits, 64);
  const auto b = draw(second, logits, 64);
  EXPECT_EQ(a, b);
  params.seed = 1235;
  Sampler other(params);
  EXPECT_NE(draw(other, logits, 64), a);
}

TEST(Sampler, FrequenciesMatchSoftmaxWithTemperature) {
  const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 2.0f, 0.3f, -1.0f, 1.5f, 0.8f};
  const float temperature = 0.7f;
  std::vector<double> expected(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += expected[i] = std::exp(logits[i] / temperature);
  for (double& p : expected) p /= sum;
  Sampler sampler(unfiltered(temperature, 99));
  const int draws = 100000;
  std::vector<int> counts(logits.size(), 0);
  for (const int32_t token : draw(sampler, logits, draws)) ++counts[token];
  for (size_t i = 0; i < logits.size(); ++i) {
    // 5 standard deviations of a binomial frequency.
    const double tolerance = 5 * std::sqrt(expected[i] * (1 - expected[i]) / draws);
    EXPECT_NEAR(counts[i] / double(draws), expected[i], tolerance) << "token " << i;
  }
}

TEST(Sampler, NeverDrawsANegativeInfinityOrNanLogit) {
  std::vector<float> logits(16, -INFINITY);
  logits[3] = 0.0f;
  logits[9] = 0.1f;
  logits[5] = NAN;
  Sampler sampler(unfiltered(1.0f, 5));
  for (const int32_t token : draw(sampler, logits, 500)) EXPECT_TRUE(token == 3 || token == 9);
}

}  // namespace
}  // namespace q4jit
