// The attention decision loop (attention_path_tuner.hpp): find the buckets, compile every
// candidate once, then per bucket validate, time and decide, storing each decision at once so an
// interrupted run keeps what it measured.
#include "tuner/attention_path_tuner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "tuner/attention_bench.hpp"
#include "tuner/attention_runner.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string microseconds(double us) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f us", us);
  return text;
}

class AttentionRun {
 public:
  AttentionRun(Backend& backend, KernelService& service, TuningDb& db,
               const AttentionGeometry& geometry, const AttentionTuneOptions& options,
               AttentionTuneCounters& counters)
      : backend_(backend),
        service_(service),
        db_(db),
        geometry_(geometry),
        options_(options),
        counters_(counters),
        device_(backend.current_device()),
        fingerprint_(device_fingerprint(device_, service.compiler())),
        decode_configs_(
            decode_split_configs(device_, {geometry.heads, geometry.kv_heads, geometry.head_dim,
                                           std::max<int64_t>(geometry.max_positions, 1)})) {}
  std::vector<DecisionOutcome> run();

 private:
  void say(const std::string& line) const {
    if (options_.progress) options_.progress(line);
  }
  AttentionPrefillShape prefill_shape(int64_t T, int64_t first_position) const {
    const int64_t H = geometry_.heads, Hkv = geometry_.kv_heads, D = geometry_.head_dim;
    return {T, first_position, H, Hkv, D, (H + 2 * Hkv) * D, H * D};
  }
  void find(const char* family, const std::string& hash, const std::vector<int>& buckets,
            const char* label);
  void compile();
  const Function* kernel(const std::string& family, const std::string& config) const;
  void decide_decode(DecisionOutcome& outcome);
  void decide_prefill(DecisionOutcome& outcome);
  void store(DecisionOutcome& outcome, const std::vector<AttentionTiming>& timings,
             const std::string& default_choice, const std::string& default_config, double seconds);

  Backend& backend_;
  KernelService& service_;
  TuningDb& db_;
  AttentionGeometry geometry_;
  const AttentionTuneOptions& options_;
  AttentionTuneCounters& counters_;
  const DeviceInfo& device_;
  DeviceFingerprint fingerprint_;
  std::map<int, AttentionDecodeConfig> decode_configs_;
  Clock::time_point start_ = Clock::now();
  std::vector<DecisionOutcome> outcomes_;
  // "family|config" -> the loaded kernel, or why it is missing.
  std::map<std::string, Result<AttentionKernel>> kernels_;
};

void AttentionRun::find(const char* family, const std::string& hash,
                        const std::vector<int>& buckets, const char* label) {
  for (int bucket : buckets) {
    DecisionOutcome outcome;
    outcome.key = attention_key(fingerprint_, family, hash, geometry_, bucket);
    outcome.projections = label;
    if (options_.force) db_.forget(outcome.key);
    if (const std::optional<DecisionRecord> stored = db_.find_decision(outcome.key)) {
      outcome.from_db = true;
      outcome.decision = *stored;
      ++counters_.from_db;
    }
    outcomes_.push_back(std::move(outcome));
  }
}

void AttentionRun::compile() {
  std::map<std::string, std::vector<KernelVariant>> variants;  // by family name
  std::map<std::string, KernelFamily> families;
  const auto add = [&](const KernelFamily& family, const KernelVariant& variant) {
    const std::string key = family.name + "|" + variant.config;
    if (kernels_.count(key)) return;
    kernels_.emplace(key, Error(key + ": not compiled"));
    families.emplace(family.name, family);
    variants[family.name].push_back(variant);
  };
  for (const DecisionOutcome& outcome : outcomes_) {
    if (outcome.from_db) continue;
    if (outcome.projections == "decode") {
      for (const auto& [split, cfg] : decode_configs_)
        add(attention_decode_family(), decode_variant(cfg));
      continue;
    }
    for (const PrefillChoice& choice :
         prefill_candidates(device_, prefill_shape(outcome.key.m_bucket, 0)))
      add(prefill_family(choice.path), prefill_variant(choice));
  }
  const int jobs =
      options_.jobs > 0 ? options_.jobs : int(std::max(1u, std::thread::hardware_concurrency()));
  for (const auto& [name, list] : variants) {
    say("compiling " + std::to_string(list.size()) + " " + name +
        " configurations (kernel store first)");
    std::vector<Result<AttentionKernel>> loaded =
        load_attention_kernels(backend_, service_, families.at(name), list, jobs);
    for (size_t i = 0; i < list.size(); ++i) {
      kernels_.erase(name + "|" + list[i].config);
      kernels_.emplace(name + "|" + list[i].config, std::move(loaded[i]));
    }
  }
}

const Function* AttentionRun::kernel(const std::string& family, const std::string& config) const {
  const auto found = kernels_.find(family + "|" + config);
  if (found == kernels_.end() || !found->second.ok()) return nullptr;
  return &found->second.value().function;
}

void AttentionRun::store(DecisionOutcome& outcome, const std::vector<AttentionTiming>& timings,
                         const std::string& default_choice, const std::string& default_config,
                         double seconds) {
  std::optional<DecisionRecord> decision =
      decide_attention(timings, default_choice, default_config);
  if (!decision) {
    outcome.skipped = "no candidate matched the reference";
    return;
  }
  decision->tuning_seconds = seconds;
  db_.save_decision(outcome.key, *decision);
  outcome.decision = *decision;
  outcome.decided = true;
  ++counters_.decided;
  say(outcome.key.shape_label() + " (" + outcome.projections + "): " + decision->choice + " " +
      decision->config + " " + microseconds(decision->median_us) + ", default " +
      decision->default_choice + " " + microseconds(decision->default_us));
}

void AttentionRun::decide_decode(DecisionOutcome& outcome) {
  const Clock::time_point start = Clock::now();
  const int64_t length = outcome.key.m_bucket;
  DecodeBench bench(backend_, geometry_, length, decode_configs_, options_.max_copies);
  std::vector<AttentionTiming> timings;
  for (const auto& [split, cfg] : decode_configs_) {
    const Function* function = kernel(attention_decode_family().name, to_string(cfg));
    if (function == nullptr) continue;
    ++counters_.validations;
    const TrialRecord verdict = bench.validate(cfg, *function);
    if (verdict.status != TrialStatus::ok) {
      say(to_string(cfg) + " at length " + std::to_string(length) + ": " + verdict.detail);
      continue;
    }
    counters_.timings += 2;
    timings.push_back({split_choice(split), to_string(cfg), bench.time(cfg, *function)});
  }
  const int fallback =
      default_decode_split(decode_configs_, geometry_.heads, device_.sm_count, length);
  store(outcome, timings, split_choice(fallback), to_string(decode_configs_.at(fallback)),
        seconds_since(start));
}

// A candidate's time is its sum over the prefixes; one wrong result at any prefix rules it out.
void AttentionRun::decide_prefill(DecisionOutcome& outcome) {
  const Clock::time_point start = Clock::now();
  const int64_t T = outcome.key.m_bucket;
  const std::vector<PrefillChoice> candidates = prefill_candidates(device_, prefill_shape(T, 0));
  std::vector<double> total(candidates.size(), 0.0);
  std::vector<bool> valid(candidates.size(), true);
  for (int64_t first_position : attention_prefixes(T, geometry_.max_positions)) {
    PrefillBench bench(backend_, geometry_, T, first_position, options_.max_copies);
    for (size_t i = 0; i < candidates.size(); ++i) {
      const PrefillChoice& choice = candidates[i];
      const Function* function = kernel(prefill_family(choice.path).name, choice.config());
      valid[i] = valid[i] && function != nullptr && choice.legal(device_, bench.shape());
      if (!valid[i]) continue;
      ++counters_.validations;
      const TrialRecord verdict = bench.validate(choice, *function);
      if (verdict.status != TrialStatus::ok) {
        say(to_string(choice.path) + " " + choice.config() + " at T " + std::to_string(T) + " p0 " +
            std::to_string(first_position) + ": " + verdict.detail);
        valid[i] = false;
        continue;
      }
      counters_.timings += 2;
      total[i] += bench.time(choice, *function);
    }
  }
  std::vector<AttentionTiming> timings;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (valid[i])
      timings.push_back({to_string(candidates[i].path), candidates[i].config(), total[i]});
  }
  if (candidates.empty()) {
    outcome.skipped = "no legal configuration";
    return;
  }
  store(outcome, timings, to_string(candidates.front().path), candidates.front().config(),
        seconds_since(start));
}

std::vector<DecisionOutcome> AttentionRun::run() {
  find(kAttentionSplitFamily, attention_split_source_hash(),
       attention_decode_buckets(geometry_.max_positions), "decode");
  find(kAttentionPathFamily, attention_path_source_hash(),
       attention_prefill_buckets(options_.m_buckets, geometry_.max_positions), "prefill");
  const bool pending =
      std::any_of(outcomes_.begin(), outcomes_.end(), [](auto& o) { return !o.from_db; });
  if (!pending) return std::move(outcomes_);  // the warm path: no compile, no timing
  if (db_.read_only()) {
    for (DecisionOutcome& outcome : outcomes_) {
      if (!outcome.from_db) outcome.skipped = "tuning database is read-only";
    }
    return std::move(outcomes_);
  }
  compile();
  for (DecisionOutcome& outcome : outcomes_) {
    if (outcome.from_db) continue;
    if (options_.deadline_seconds > 0 && seconds_since(start_) > options_.deadline_seconds) {
      outcome.skipped = "budget: the attention share is spent";
      continue;
    }
    if (outcome.projections == "decode") {
      if (decode_configs_.empty()) {
        outcome.skipped = "no legal configuration";
        continue;
      }
      decide_decode(outcome);
    } else {
      decide_prefill(outcome);
    }
  }
  return std::move(outcomes_);
}

}  // namespace

std::vector<DecisionOutcome> tune_attention(Backend& backend, KernelService& service, TuningDb& db,
                                            const AttentionGeometry& geometry,
                                            const AttentionTuneOptions& options,
                                            AttentionTuneCounters& counters) {
  const Clock::time_point start = Clock::now();
  std::vector<DecisionOutcome> outcomes;
  if (geometry.heads > 0 && geometry.kv_heads > 0 && geometry.head_dim > 0 &&
      geometry.heads % geometry.kv_heads == 0)
    outcomes = AttentionRun(backend, service, db, geometry, options, counters).run();
  counters.seconds += seconds_since(start);
  return outcomes;
}

}  // namespace q4jit
