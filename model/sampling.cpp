// Sampler: repetition penalty, then greedy argmax or temperature followed by the filters top-k,
// top-p, min-p and typical (in that order, each renormalizing what the previous one kept), then
// one draw from the seeded mt19937_64. Candidates are sorted only as far as a filter needs: a
// partial sort for top-k, so vocabularies of 32,000 cost little per token.
#include "model/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/error.hpp"

namespace q4jit {

namespace {

struct Candidate {
  int32_t id;
  float logit;
  double probability = 0;
};

bool by_logit(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// CTRL-style: each distinct token of the window once; positive logits divided, negative
// multiplied, so the token always becomes less likely.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history,
                              float penalty, int range) {
  if (penalty == 1.0f || history.empty()) return;
  const size_t window = range > 0 ? std::min<size_t>(range, history.size()) : history.size();
  std::vector<bool> seen(logits.size(), false);
  for (const int32_t id : history.last(window)) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || seen[id]) continue;
    seen[id] = true;
    logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
  }
}

// Fills probability = softmax over the candidates' logits (in double, max subtracted).
void normalize_from_logits(std::vector<Candidate>& candidates) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (const auto& c : candidates) max_logit = std::max(max_logit, c.logit);
  double sum = 0;
  for (auto& c : candidates) sum += c.probability = std::exp(double(c.logit) - max_logit);
  for (auto& c : candidates) c.probability /= sum;
}

void renormalize(std::vector<Candidate>& candidates) {
  double sum = 0;
  for (const auto& c : candidates) sum += c.probability;
  for (auto& c : candidates) c.probability /= sum;
}

// Keeps the k most likely, sorted by descending logit.
void keep_top_k(std::vector<Candidate>& candidates, int k) {
  if (k <= 0 || static_cast<size_t>(k) >= candidates.size()) return;
  std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(), by_logit);
  candidates.resize(k);
}

// Keeps the first candidates (in their current order) until their mass reaches `mass`.
void keep_prefix_with_mass(std::vector<Candidate>& candidates, double mass) {
  double cumulative = 0;
  size_t keep = 0;
  while (keep < candidates.size()) {
    cumulative += candidates[keep++].probability;
    if (cumulative >= mass) break;
  }
  candidates.resize(std::max<size_t>(keep, 1));
}

void keep_top_p(std::vector<Candidate>& candidates, float p) {
  if (p >= 1.0f) return;
  std::sort(candidates.begin(), candidates.end(), by_logit);
  keep_prefix_with_mass(candidates, p);
}

void keep_min_p(std::vector<Candidate>& candidates, float min_p) {
  if (min_p <= 0.0f) return;
  double max_probability = 0;
  for (const auto& c : candidates) max_probability = std::max(max_probability, c.probability);
  const double threshold = min_p * max_probability;
  std::erase_if(candidates, [threshold](const Candidate& c) { return c.probability < threshold; });
}

// Locally typical sampling (Meister et al. 2022): order by |-log p - entropy|, keep until the
// mass reaches `typical`.
void keep_typical(std::vector<Candidate>& candidates, float typical) {
  if (typical >= 1.0f) return;
  double entropy = 0;
  for (const auto& c : candidates) {
    if (c.probability > 0) entropy -= c.probability * std::log(c.probability);
  }
  auto distance = [entropy](const Candidate& c) {
    return c.probability > 0 ? std::abs(-std::log(c.probability) - entropy)
                             : std::numeric_limits<double>::infinity();
  };
  std::stable_sort(
      candidates.begin(), candidates.end(),
      [&](const Candidate& a, const Candidate& b) { return distance(a) < distance(b); });
  keep_prefix_with_mass(candidates, typical);
}

}  // namespace

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best] || std::isnan(logits[best])) best = static_cast<int32_t>(i);
  }
  return best;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  if (logits.empty()) throw Error("Sampler: empty logits");
  apply_repetition_penalty(logits, history, params_.repetition_penalty, params_.repetition_range);
  const int32_t best = argmax(logits);
  if (params_.greedy || params_.temperature <= 0.0f || !std::isfinite(logits[best])) return best;

  std::vector<Candidate> candidates;
  candidates.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[i] /= params_.temperature;
    if (!std::isnan(logits[i])) candidates.push_back({static_cast<int32_t>(i), logits[i]});
  }
  keep_top_k(candidates, params_.top_k);
  normalize_from_logits(candidates);
  keep_top_p(candidates, params_.top_p);
  renormalize(candidates);
  keep_min_p(candidates, params_.min_p);
  renormalize(candidates);
  keep_typical(candidates, params_.typical);
  renormalize(candidates);

  const double draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double cumulative = 0;
  int32_t last_possible = best;
  for (const auto& c : candidates) {
    if (c.probability <= 0) continue;
    cumulative += c.probability;
    last_possible = c.id;
    if (draw < cumulative) return c.id;
  }
  return last_possible;  // rounding left the draw just above the total
}

}  // namespace q4jit
