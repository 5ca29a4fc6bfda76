// The tuning loop for q4_matmul (autotuner.hpp): enumerate, prune, compile, prune, validate,
// time, store. Per problem (shape x M bucket) the order is fixed so that an interrupted tune
// resumes: trials already in the database are not validated again, and a stored first-round time
// stands in for that candidate's first measurement.
#include "tuner/autotuner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "common/half.hpp"
#include "model/gptq.hpp"
#include "model/ref/cpu_engine.hpp"
#include "tuner/measure.hpp"
#include "tuner/q4_matmul_runner.hpp"
#include "tuner/q4_matmul_tuning.hpp"
#include "tuner/selection.hpp"

namespace q4jit {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Random GPTQ weights in the loaded layout; timings do not depend on the values, validation
// needs them random (never all zeros). Act-order: every group spread over K by a stride.
GptqLinear random_linear(const MatmulShapeKey& shape, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  GptqLinear linear;
  linear.name = "tune";
  linear.K = static_cast<int>(shape.K);
  linear.N = static_cast<int>(shape.N);
  linear.group_size = static_cast<int>(shape.group_size);
  linear.G = linear.K / linear.group_size;
  linear.act_order = shape.act_order;
  std::uniform_int_distribution<uint32_t> word;
  linear.qweight.resize(size_t(linear.K / 8) * linear.N);
  for (int32_t& value : linear.qweight) value = static_cast<int32_t>(word(rng));
  linear.qzeros.resize(size_t(linear.G) * (linear.N / 8));
  for (int32_t& value : linear.qzeros) value = static_cast<int32_t>(word(rng));
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  linear.scales.resize(size_t(linear.G) * linear.N);
  const float base = 1.0f / (8.0f * std::sqrt(float(linear.K)));
  for (uint16_t& value : linear.scales) value = float_to_half(scale(rng) * base);
  if (shape.act_order) {
    std::vector<int32_t> g_idx(linear.K);
    for (int k = 0; k < linear.K; ++k) g_idx[k] = int32_t((int64_t(k) * 7919) % linear.G);
    // The stride pattern fills groups evenly only when G divides it well; fall back to blocks.
    std::vector<int> counts(linear.G, 0);
    for (int32_t g : g_idx) ++counts[g];
    if (std::any_of(counts.begin(), counts.end(), [&](int c) { return c != linear.group_size; })) {
      for (int k = 0; k < linear.K; ++k) g_idx[k] = (linear.G - 1) - k / linear.group_size;
    }
    linear.x_map = act_order_permutation(g_idx, linear.G);
  }
  return linear;
}

struct WeightCopy {
  DeviceBuffer qweight, scales, qzeros, x_map;
};

// Everything one weight shape's problems share: the weights, the reference W, the copies.
struct ShapeData {
  GptqLinear linear;
  std::vector<float> weight;  // [N, K] reference
  std::vector<WeightCopy> copies;
  int64_t weight_bytes = 0;
};

bool terminal_failure(TrialStatus status) {
  return status != TrialStatus::ok;
}

class TuneRun {
 public:
  TuneRun(Backend& backend, KernelService& service, TuningDb& db, const TuneOptions& options,
          TuneCounters& counters)
      : backend_(backend),
        service_(service),
        db_(db),
        options_(options),
        counters_(counters),
        device_(backend.current_device()),
        fingerprint_(device_fingerprint(device_, service.compiler())),
        family_(q4_matmul_family()),
        source_hash_(family_source_hash(family_)) {}

  std::vector<ProblemOutcome> run(const std::vector<TuneShape>& shapes);

 private:
  void say(const std::string& line) const {
    if (options_.progress) options_.progress(line);
  }
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& host) {
    DeviceBuffer buffer = backend_.allocate(std::max<size_t>(host.size() * sizeof(T), 16));
    if (!host.empty())
      backend_.copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
    return buffer;
  }
  Q4MatmulShape shape_of(const TuningKey& key) const {
    return {key.m_bucket, key.K, key.N, key.group_size, key.act_order};
  }
  void compile_candidates(const std::vector<ProblemOutcome*>& pending);
  ShapeData prepare_shape(const MatmulShapeKey& shape);
  void tune_problem(ProblemOutcome& outcome, ShapeData& data, double seconds);
  void store_winner(ProblemOutcome& outcome, WinnerRecord winner);

  Backend& backend_;
  KernelService& service_;
  TuningDb& db_;
  const TuneOptions& options_;
  TuneCounters& counters_;
  const DeviceInfo& device_;
  DeviceFingerprint fingerprint_;
  KernelFamily family_;
  std::string source_hash_;
  Clock::time_point start_ = Clock::now();
  std::map<std::string, Result<Q4MatmulKernel>> kernels_;
  std::map<std::string, std::optional<CandidateVerdict>> after_compile_;
  double winner_compile_seconds_ = 0.5;  // the longest winner compile seen: reserved per problem
};

// Candidate indices in validation order: the default first, then a fixed shuffle per problem, so
// that a list cut short by the time share is a fair sample of the space.
std::vector<size_t> validation_order(size_t count, const TuningKey& key) {
  std::vector<size_t> order(count);
  for (size_t i = 0; i < count; ++i) order[i] = i;
  if (count > 1) {
    std::mt19937 rng(uint32_t(key.K * 31 + key.N * 7 + key.m_bucket));
    std::shuffle(order.begin() + 1, order.end(), rng);
  }
  return order;
}

// The winner's request compiled alone (store first): its key is what a warm load requests.
void TuneRun::store_winner(ProblemOutcome& outcome, WinnerRecord winner) {
  const Clock::time_point compile_start = Clock::now();
  const CompileTarget target = select_target(device_.sm(), service_.compiler().supported_archs());
  const Result<std::string> key =
      record_winner_kernel(service_, q4_matmul_configs_by_name().at(winner.config), target);
  winner_compile_seconds_ = std::max(winner_compile_seconds_, seconds_since(compile_start));
  winner.kernel_key = key.ok() ? key.value() : "";
  if (!key.ok()) say(winner.config + ": winner not compiled alone: " + key.error().what());
  db_.save_winner(outcome.key, winner);
  outcome.winner = std::move(winner);
}

void TuneRun::compile_candidates(const std::vector<ProblemOutcome*>& pending) {
  std::vector<Q4MatmulConfig> configs;
  std::map<std::string, bool> seen;
  for (const ProblemOutcome* outcome : pending) {
    const Q4MatmulShape shape = shape_of(outcome->key);
    std::map<std::string, TrialStatus> stored;
    for (const TrialRecord& trial : db_.trials(outcome->key)) stored[trial.config] = trial.status;
    for (const Q4MatmulConfig& cfg : q4_matmul_candidates(shape)) {
      const std::string name = to_string(cfg);
      const auto it = stored.find(name);
      if (it != stored.end() && terminal_failure(it->second)) continue;
      if (!legal(cfg, device_, shape) || seen[name]) continue;
      seen[name] = true;
      configs.push_back(cfg);
    }
  }
  const int jobs =
      options_.jobs > 0 ? options_.jobs : int(std::max(1u, std::thread::hardware_concurrency()));
  say("compiling " + std::to_string(configs.size()) + " configurations on " + std::to_string(jobs) +
      " threads (kernel store first)");
  std::vector<Result<Q4MatmulKernel>> loaded = load_q4_matmul(backend_, service_, configs, jobs);
  for (size_t i = 0; i < configs.size(); ++i) {
    const std::string name = to_string(configs[i]);
    if (loaded[i].ok()) {
      const Function& function = loaded[i].value().matmul;
      const int blocks = backend_.max_active_blocks_per_sm(function, configs[i].block_threads, 0);
      after_compile_[name] =
          prune_after_compile(name, backend_.attributes(function), blocks, options_.limits);
    }
    kernels_.emplace(name, std::move(loaded[i]));
  }
  say("compiled in " + std::to_string(int(seconds_since(start_))) +
      " s: " + service_.counters().summary());
}

ShapeData TuneRun::prepare_shape(const MatmulShapeKey& shape) {
  ShapeData data;
  data.linear = random_linear(shape, uint64_t(shape.K) * 131 + uint64_t(shape.N));
  data.weight = dequantize_gptq(data.linear);
  data.weight_bytes =
      int64_t(data.linear.qweight.size() + data.linear.qzeros.size() + data.linear.x_map.size()) *
          4 +
      int64_t(data.linear.scales.size()) * 2;
  const int copies = std::min(copies_beyond_cache(device_, data.weight_bytes),
                              std::max(options_.max_weight_copies, 2));
  for (int i = 0; i < copies; ++i) {
    data.copies.push_back({upload(data.linear.qweight), upload(data.linear.scales),
                           upload(data.linear.qzeros), upload(data.linear.x_map)});
  }
  return data;
}

void TuneRun::tune_problem(ProblemOutcome& outcome, ShapeData& data, double seconds) {
  const Clock::time_point problem_start = Clock::now();
  const TuningKey& key = outcome.key;
  const Q4MatmulShape shape = shape_of(key);
  const int M = key.m_bucket, K = int(key.K), N = int(key.N);
  const std::string default_config = to_string(Q4MatmulConfig{});

  // Random activations and the reference product.
  std::mt19937 rng(uint32_t(17 + M));
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<uint16_t> x(size_t(M) * K);
  std::vector<float> x_float(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    x_float[i] = half_to_float(x[i] = float_to_half(value(rng)));
  std::vector<float> want(size_t(M) * N);
  ref::matmul(x_float.data(), data.weight.data(), want.data(), M, K, N);

  std::map<std::string, TrialRecord> stored;
  for (TrialRecord& trial : db_.trials(key)) stored[trial.config] = trial;
  const std::vector<Q4MatmulConfig> candidates = q4_matmul_candidates(shape);
  std::vector<CandidateFootprint> footprints;
  for (const Q4MatmulConfig& cfg : candidates)
    footprints.push_back(q4_matmul_footprint(cfg, shape));
  const std::vector<CandidateVerdict> verdicts = prune_before_compile(footprints, device_, M);

  int64_t workspace_bytes = 16;
  for (const Q4MatmulConfig& cfg : candidates)
    workspace_bytes = std::max(workspace_bytes, workspace(cfg, shape).bytes);
  DeviceBuffer x_device = upload(x), out = backend_.allocate(want.size() * 2);
  DeviceBuffer scratch = backend_.allocate(size_t(workspace_bytes));
  backend_.memset(scratch.raw(), 0, size_t(workspace_bytes), {});
  auto operands = [&](int copy) {
    const WeightCopy& w = data.copies[size_t(copy)];
    return Q4MatmulOperands{out.raw(),      x_device.raw(), w.x_map.raw(), w.qweight.raw(),
                            w.scales.raw(), w.qzeros.raw(), scratch.raw()};
  };
  auto record = [&](TrialRecord trial) {
    if (!stored.count(trial.config)) db_.save_trial(key, trial);  // saved as it finishes
    stored[trial.config] = trial;
  };

  // Validate every candidate that got this far; failures are data, never winners.
  std::vector<std::string> survivors;
  int failed = 0;
  std::vector<uint16_t> got(want.size());
  int tried = 0;
  for (size_t i : validation_order(candidates.size(), key)) {
    // Validation may take at most 40% of the share: the rest is for timing.
    if (tried > 0 && seconds_since(problem_start) > 0.4 * seconds) break;
    ++tried;
    const std::string& name = verdicts[i].config;
    const auto previous = stored.find(name);
    if (previous != stored.end()) {  // resumed: decided in an earlier run
      if (previous->second.status == TrialStatus::ok) survivors.push_back(name);
      failed += previous->second.status == TrialStatus::wrong_result ||
                previous->second.status == TrialStatus::compile_failed ||
                previous->second.status == TrialStatus::launch_failed;
      continue;
    }
    TrialRecord trial;
    trial.config = name;
    if (verdicts[i].status != TrialStatus::ok) {
      trial.status = verdicts[i].status;
      trial.detail = verdicts[i].detail;
      record(trial);
      continue;
    }
    const auto kernel = kernels_.find(name);
    if (kernel == kernels_.end() || !kernel->second.ok()) {
      trial.status = TrialStatus::compile_failed;
      trial.detail = kernel == kernels_.end() ? "not compiled" : kernel->second.error().what();
      ++failed;
      record(trial);
      continue;
    }
    if (const auto& pruned = after_compile_[name]) {
      trial.status = pruned->status;
      trial.detail = pruned->detail;
      record(trial);
      continue;
    }
    const Q4MatmulKernel& launchable = kernel->second.value();
    try {
      backend_.memset(scratch.raw(), 0, size_t(workspace(launchable.config, shape).zeroed_bytes),
                      {});
      backend_.memset(out.raw(), 0xff, want.size() * 2, {});
      launch_q4_matmul(backend_, launchable, shape, operands(0), {});
      backend_.copy_to_host(got.data(), out.raw(), got.size() * 2, {});
      backend_.synchronize({});
      ++counters_.validations;
      double diff = 0, norm = 0;
      for (size_t j = 0; j < want.size(); ++j) {
        const double d = double(half_to_float(got[j])) - want[j];
        diff += d * d;
        norm += double(want[j]) * want[j];
      }
      trial.relative_error = std::sqrt(diff / std::max(norm, 1e-30));
      if (!(trial.relative_error <= tolerance(launchable.config))) {
        trial.status = TrialStatus::wrong_result;
        char detail[96];
        std::snprintf(detail, sizeof detail, "relative error %.2e above %.1e", trial.relative_error,
                      tolerance(launchable.config));
        trial.detail = detail;
        ++failed;
      } else {
        survivors.push_back(name);
      }
    } catch (const Error& error) {
      trial.status = TrialStatus::launch_failed;
      trial.detail = error.what();
      ++failed;
    }
    record(trial);
  }

  // Timing: one repetition is the median per call over a few graph launches of rotated copies.
  MeasureOptions measure_options;
  measure_options.warmup_launches = 1;
  measure_options.timed_launches = 5;
  std::map<std::string, bool> resumed_used;
  const auto time_config = [&](const std::string& config, int repetitions) {
    std::vector<double> samples;
    const Q4MatmulKernel& launchable = kernels_.at(config).value();
    backend_.memset(scratch.raw(), 0, size_t(workspace(launchable.config, shape).zeroed_bytes), {});
    for (int r = 0; r < repetitions; ++r) {
      const Timing timing = time_calls(
          backend_, int(data.copies.size()),
          [&](int copy, StreamView stream) {
            launch_q4_matmul(backend_, launchable, shape, operands(copy), stream);
          },
          measure_options);
      ++counters_.timings;
      samples.push_back(timing.median_us);
    }
    return samples;
  };
  const MeasureFunction measure = [&](const std::string& config, int repetitions) {
    const TrialRecord& known = stored[config];
    if (!resumed_used[config] && known.rung >= 1 && known.median_us > 0) {
      resumed_used[config] = true;  // the stored first round stands in for a measurement
      return std::vector<double>(size_t(repetitions), known.median_us);
    }
    resumed_used[config] = true;
    std::vector<double> samples = time_config(config, repetitions);
    if (known.rung == 0) {  // first measurement: saved at once so an interrupted tune resumes
      TrialRecord first = known;
      const SampleSummary summary = summarize(samples);
      first.median_us = summary.median_us;
      first.min_us = summary.min_us;
      first.p90_us = summary.p90_us;
      first.repetitions = summary.repetitions;
      first.rung = 1;
      db_.save_trial(key, first);
      stored[config] = first;
    }
    return samples;
  };
  // Size the first round from what one repetition costs here: it gets a third of what is left
  // after reserving two final rounds and the winner's compile; halving stops at the share.
  SelectionOptions selection_options;
  double reserve = winner_compile_seconds_;
  if (!survivors.empty()) {
    const Clock::time_point probe_start = Clock::now();
    time_config(survivors.front(), 1);
    const double repetition_seconds = seconds_since(probe_start);
    reserve += 2.0 * (selection_options.finalists + 1) * repetition_seconds;
    const double left = seconds - seconds_since(problem_start) - reserve;
    const double fits = std::floor(left / (3 * std::max(repetition_seconds, 1e-6)));
    const size_t first_round = size_t(std::clamp(fits, 1.0, double(survivors.size())));
    survivors.resize(first_round);  // the default stays: it is first
  }
  say(key.shape_label() + ": " + std::to_string(survivors.size()) + " timed of " +
      std::to_string(tried) + " validated of " + std::to_string(candidates.size()) +
      " candidates (share " + std::to_string(seconds).substr(0, 4) + " s)");
  selection_options.out_of_time = [&] { return seconds_since(problem_start) + reserve > seconds; };
  const std::optional<Selection> selection =
      survivors.empty() ? std::nullopt
                        : select_fastest(survivors, default_config, measure, selection_options);
  if (!selection) {
    outcome.skipped = "no candidate matched the reference";
    return;
  }
  for (const CandidateTiming& timing : selection->timings) {
    TrialRecord trial = stored[timing.config];
    trial.median_us = timing.summary.median_us;
    trial.min_us = timing.summary.min_us;
    trial.p90_us = timing.summary.p90_us;
    trial.repetitions = timing.summary.repetitions;
    trial.rung = std::max(trial.rung, timing.rung);
    db_.save_trial(key, trial);
  }

  WinnerRecord winner;
  winner.config = selection->winner;
  winner.default_config = default_config;
  winner.median_us = selection->winner_final.median_us;
  winner.min_us = selection->winner_final.min_us;
  winner.p90_us = selection->winner_final.p90_us;
  winner.repetitions = selection->winner_final.repetitions;
  winner.default_us = selection->default_final ? selection->default_final->median_us : 0;
  winner.candidates_tried = tried;
  winner.candidates_failed = failed;
  winner.tuning_seconds = seconds_since(problem_start);
  store_winner(outcome, std::move(winner));
  outcome.tuned = true;
  outcome.default_kept = selection->default_kept;
}

std::vector<ProblemOutcome> TuneRun::run(const std::vector<TuneShape>& shapes) {
  std::vector<ProblemOutcome> outcomes;
  for (const TuneShape& shape : shapes) {
    for (int bucket : options_.m_buckets) {
      ProblemOutcome outcome;
      outcome.key = make_tuning_key(fingerprint_, family_, source_hash_, shape.shape, bucket);
      outcome.projections = shape.projections;
      if (options_.force) db_.forget(outcome.key);
      if (const auto winner = db_.find_winner(outcome.key)) {
        outcome.from_db = true;
        outcome.winner = *winner;
        ++counters_.from_db;
      }
      outcomes.push_back(std::move(outcome));
    }
  }
  counters_.problems = int64_t(outcomes.size());
  std::vector<ProblemOutcome*> pending;
  for (ProblemOutcome& outcome : outcomes) {
    if (!outcome.from_db) pending.push_back(&outcome);
  }
  if (pending.empty()) return outcomes;  // the warm path: no compile, no timing
  if (db_.read_only()) {
    for (ProblemOutcome* outcome : pending) outcome->skipped = "tuning database is read-only";
    return outcomes;
  }
  if (!db_.read_ceiling(fingerprint_)) {
    db_.save_read_ceiling(fingerprint_, measure_read_ceiling(backend_, service_));
    ++counters_.timings;
  }
  compile_candidates(pending);

  // Problems of one shape run together, sharing the weights on the device.
  for (size_t i = 0; i < pending.size();) {
    const TuningKey& first = pending[i]->key;
    ShapeData data = prepare_shape({first.K, first.N, first.group_size, first.act_order});
    for (; i < pending.size() && pending[i]->key.K == first.K && pending[i]->key.N == first.N &&
           pending[i]->key.group_size == first.group_size &&
           pending[i]->key.act_order == first.act_order;
         ++i) {
      const double remaining = options_.budget_seconds - seconds_since(start_);
      if (remaining <= 0) {  // stored all the same: a second run does not retune it
        pending[i]->skipped = "time budget spent";
        pending[i]->default_kept = true;
        WinnerRecord fallback;
        fallback.config = fallback.default_config = to_string(Q4MatmulConfig{});
        store_winner(*pending[i], std::move(fallback));
        continue;
      }
      // The fair share of what is left, recomputed per problem so unused time flows onwards.
      double share = remaining / double(pending.size() - i);
      if (options_.shape_cap_seconds > 0) share = std::min(share, options_.shape_cap_seconds);
      say("[" + std::to_string(i + 1) + "/" + std::to_string(pending.size()) + "] " +
          pending[i]->key.shape_label() + " (" + pending[i]->projections + "), ETA " +
          std::to_string(int(std::ceil(remaining))) + " s");
      tune_problem(*pending[i], data, share);
      if (pending[i]->tuned) ++counters_.tuned;
    }
  }
  return outcomes;
}

}  // namespace

Autotuner::Autotuner(Backend& backend, KernelService& service, TuningDb& db, TuneOptions options)
    : backend_(backend), service_(service), db_(db), options_(std::move(options)) {}

std::vector<ProblemOutcome> Autotuner::tune(const std::vector<TuneShape>& shapes) {
  const Clock::time_point start = Clock::now();
  counters_ = {};
  std::vector<ProblemOutcome> outcomes =
      TuneRun(backend_, service_, db_, options_, counters_).run(shapes);
  counters_.seconds = seconds_since(start);
  return outcomes;
}

}  // namespace q4jit
