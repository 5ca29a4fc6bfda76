// The tuning loop (autotuner.hpp): find the problems, compile their candidates, then per shape
// (sharing its weights on the device) and bucket: search each path's family within its share,
// store the winner at once, compile it alone in the background, and decide the bucket's path;
// then the fusion decisions from the path decisions. Per problem the order is fixed so that an
// interrupted tune resumes (problem_search.hpp).
#include "tuner/autotuner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "tuner/attention_path_tuner.hpp"
#include "tuner/budget.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/problem_search.hpp"
#include "tuner/projection_fusion.hpp"
#include "tuner/shape_bench.hpp"
#include "tuner/tuned_families.hpp"

namespace q4jit {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// From this bucket on a product is compute-bound: two weight copies are rotated, not enough to
// exceed the L2, which saves most of a repetition's time on prefill-sized products.
constexpr int kComputeBoundBucket = 64;
// A problem of a single candidate (the default GEMM after a dequantization) gets this weight.
constexpr double kSingleCandidateWeight = 0.25;

bool terminal_failure(TrialStatus status) {
  return status != TrialStatus::ok;
}

MatmulShapeKey shape_of(const TuningKey& key) {
  return {key.K, key.N, key.group_size, key.act_order};
}

// Candidate indices in validation order: the default first, then a fixed shuffle per problem, so
// that a list cut short by the time share is a fair sample of the space.
std::vector<size_t> validation_order(const std::vector<CandidateFootprint>& candidates,
                                     const std::string& default_config, const TuningKey& key) {
  std::vector<size_t> order;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].config != default_config) order.push_back(i);
  }
  std::mt19937 rng(uint32_t(key.K * 31 + key.N * 7 + key.m_bucket));
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].config == default_config) order.insert(order.begin(), i);
  }
  return order;
}

// A winner compiled alone, off the problems' clocks: its store key(s) ("a+b" for two kernels).
struct CompiledWinner {
  std::string kernel_key;
  std::string error;
  double seconds = 0;
};

struct WinnerCompile {
  size_t outcome;
  std::future<CompiledWinner> result;
};

// One shape and bucket: its paths' problems and its decision.
struct BucketWork {
  size_t shape = 0;  // into the shapes tuned
  MatmulShapeKey weights;
  int bucket = 1;
  std::vector<size_t> problems;  // into outcomes
  size_t decision = 0;           // into decisions
};

// One fused shape and bucket: the path decisions it compares and its fusion decision.
struct FusionWork {
  size_t fused = 0;           // into decisions: the fused shape's path decision
  std::vector<size_t> parts;  // into decisions: each part's
  std::string parts_text;     // fusion_parts_text of the parts
  size_t fusion = 0;          // into fusions
};

using BucketShape = std::tuple<int64_t, int64_t, int64_t, bool, int>;

BucketShape bucket_shape(const MatmulShapeKey& shape, int bucket) {
  return {shape.K, shape.N, shape.group_size, shape.act_order, bucket};
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
        target_(select_target(device_.sm(), service.compiler().supported_archs())),
        jobs_(options.jobs > 0 ? options.jobs
                               : int(std::max(1u, std::thread::hardware_concurrency()))) {}
  std::vector<ProblemOutcome> run(const std::vector<TuneShape>& shapes,
                                  std::vector<DecisionOutcome>& decisions,
                                  std::vector<DecisionOutcome>& fusions);

 private:
  void say(const std::string& line) const {
    if (options_.progress) options_.progress(line);
  }
  TunedFamily& family(MatmulPath path) {
    std::unique_ptr<TunedFamily>& found = families_[path];
    if (!found)
      found =
          make_tuned_family(path, backend_, service_, options_.limits, options_.whole_gemm_space);
    return *found;
  }
  void find_problems(const std::vector<TuneShape>& shapes);
  void find_fusions(const std::vector<TuneShape>& shapes);
  std::vector<CandidateVerdict> verdicts_before_compile(const ProblemOutcome& outcome);
  void compile_candidates();
  void tune_shape(size_t first, size_t end, TuneBudget& budget, size_t& index);
  void tune_problem(ProblemOutcome& outcome, ShapeBench& bench, double share);
  void decide(const BucketWork& work);
  void decide_fusion_of(const FusionWork& work);
  void start_winner_compile(size_t outcome);
  void collect_winner_compiles(bool wait);

  Backend& backend_;
  KernelService& service_;
  TuningDb& db_;
  const TuneOptions& options_;
  TuneCounters& counters_;
  const DeviceInfo& device_;
  DeviceFingerprint fingerprint_;
  CompileTarget target_;
  int jobs_;
  Clock::time_point start_ = Clock::now();
  std::map<MatmulPath, std::unique_ptr<TunedFamily>> families_;
  std::vector<ProblemOutcome> outcomes_;
  std::vector<DecisionOutcome> decisions_;
  std::vector<BucketWork> buckets_;
  std::map<BucketShape, size_t> decision_index_;  // shape and bucket -> into decisions_
  std::vector<DecisionOutcome> fusions_;
  std::vector<FusionWork> fusion_work_;
  CompileEstimate compile_estimate_{BudgetPolicy{}.compile_guess_seconds};
  // std::async futures wait in their destructors: an exception leaves no compile running behind.
  std::list<WinnerCompile> winner_compiles_;
};

void TuneRun::find_problems(const std::vector<TuneShape>& shapes) {
  const bool tensor_cores = q4_mma_family().supports(device_.sm());
  const std::string path_hash = matmul_path_source_hash();
  for (size_t s = 0; s < shapes.size(); ++s) {
    const TuneShape& shape = shapes[s];
    for (int bucket : options_.m_buckets) {
      BucketWork work{s, shape.shape, bucket, {}, decisions_.size()};
      bool every_winner_stored = true;
      for (MatmulPath path : tuned_paths(bucket, tensor_cores)) {
        TunedFamily& tuned = family(path);
        if (tuned.default_config(shape.shape, bucket).empty()) continue;  // nothing legal
        ProblemOutcome outcome;
        outcome.key =
            make_tuning_key(fingerprint_, tuned.name(), tuned.source_hash(), shape.shape, bucket);
        outcome.path = path;
        outcome.projections = shape.projections;
        if (options_.force) db_.forget(outcome.key);
        if (const auto winner = db_.find_winner(outcome.key)) {
          outcome.from_db = true;
          outcome.winner = *winner;
          ++counters_.from_db;
        }
        every_winner_stored = every_winner_stored && outcome.from_db;
        work.problems.push_back(outcomes_.size());
        outcomes_.push_back(std::move(outcome));
      }
      if (work.problems.empty()) continue;  // no path can run this shape here: nothing to decide
      DecisionOutcome decision;
      decision.key =
          make_tuning_key(fingerprint_, kMatmulPathFamily, path_hash, shape.shape, bucket);
      decision.projections = shape.projections;
      if (options_.force) db_.forget(decision.key);
      const auto stored = db_.find_decision(decision.key);
      if (stored && every_winner_stored) {
        decision.from_db = true;
        decision.decision = *stored;
        ++counters_.decisions_from_db;
      }
      decision_index_[bucket_shape(shape.shape, bucket)] = decisions_.size();
      decisions_.push_back(std::move(decision));
      buckets_.push_back(std::move(work));
    }
  }
  counters_.problems = int64_t(outcomes_.size());
}

// Fused shapes whose parts are tuned too, at every bucket where each of them has a path decision.
// Stored fusions stand when their parts match and nothing they compare was decided anew.
void TuneRun::find_fusions(const std::vector<TuneShape>& shapes) {
  const std::string hash = projection_fusion_source_hash();
  for (const FusedProjection& projection : fused_projections(shapes)) {
    for (int bucket : options_.m_buckets) {
      const auto fused = decision_index_.find(bucket_shape(projection.fused, bucket));
      if (fused == decision_index_.end()) continue;
      FusionWork work{fused->second, {}, fusion_parts_text(projection.parts), fusions_.size()};
      bool inputs_stored = decisions_[fused->second].from_db;
      for (const MatmulShapeKey& part : projection.parts) {
        const auto found = decision_index_.find(bucket_shape(part, bucket));
        if (found == decision_index_.end()) break;
        work.parts.push_back(found->second);
        inputs_stored = inputs_stored && decisions_[found->second].from_db;
      }
      if (work.parts.size() != projection.parts.size()) continue;  // a part cannot run here
      DecisionOutcome outcome;
      outcome.key =
          make_tuning_key(fingerprint_, kProjectionFusionFamily, hash, projection.fused, bucket);
      outcome.projections = projection.name;
      if (options_.force) db_.forget(outcome.key);
      const auto stored = db_.find_decision(outcome.key);
      if (stored && stored->config == work.parts_text && inputs_stored) {
        outcome.from_db = true;
        outcome.decision = *stored;
        ++counters_.fusions_from_db;
      }
      fusions_.push_back(std::move(outcome));
      fusion_work_.push_back(std::move(work));
    }
  }
}

std::vector<CandidateVerdict> TuneRun::verdicts_before_compile(const ProblemOutcome& outcome) {
  return prune_before_compile(
      family(outcome.path).footprints(shape_of(outcome.key), outcome.key.m_bucket), device_,
      outcome.key.m_bucket);
}

void TuneRun::compile_candidates() {
  std::map<MatmulPath, std::vector<std::string>> configs;
  std::set<std::pair<MatmulPath, std::string>> seen;
  for (const ProblemOutcome& outcome : outcomes_) {
    if (outcome.from_db) continue;
    std::map<std::string, TrialStatus> stored;
    for (const TrialRecord& trial : db_.trials(outcome.key)) stored[trial.config] = trial.status;
    for (const CandidateVerdict& verdict : verdicts_before_compile(outcome)) {
      const auto it = stored.find(verdict.config);
      if (it != stored.end() && terminal_failure(it->second)) continue;
      if (verdict.status != TrialStatus::ok) continue;
      if (seen.insert({outcome.path, verdict.config}).second)
        configs[outcome.path].push_back(verdict.config);
    }
  }
  for (auto& [path, names] : configs) {
    say("compiling " + std::to_string(names.size()) + " " + family(path).name() +
        " configurations on " + std::to_string(jobs_) + " threads (kernel store first)");
    family(path).load(names, jobs_);
  }
  say("compiled in " + std::to_string(int(seconds_since(start_))) +
      " s: " + service_.counters().summary());
}

void TuneRun::start_winner_compile(size_t index) {
  const ProblemOutcome& outcome = outcomes_[index];
  std::vector<CompileRequest> requests =
      family(outcome.path).winner_requests(outcome.winner.config, target_);
  KernelService* service = &service_;
  winner_compiles_.push_back(
      {index, std::async(std::launch::async, [service, requests = std::move(requests)] {
         const Clock::time_point start = Clock::now();
         CompiledWinner done;
         for (const CompileRequest& request : requests) {
           const Result<CompiledKernel> kernel = service->get(request);
           if (!kernel.ok()) {
             done.error = kernel.error().what();
             break;
           }
           done.kernel_key += (done.kernel_key.empty() ? "" : "+") + kernel.value().key;
         }
         done.seconds = seconds_since(start);
         return done;
       })});
  // More compiles in flight than threads would only queue up behind each other.
  while (int(winner_compiles_.size()) > jobs_) {
    winner_compiles_.front().result.wait();
    collect_winner_compiles(false);
  }
}

// Stores the kernel keys of the winners compiled by now (all of them when `wait`).
void TuneRun::collect_winner_compiles(bool wait) {
  for (auto it = winner_compiles_.begin(); it != winner_compiles_.end();) {
    if (!wait && it->result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      ++it;
      continue;
    }
    const CompiledWinner done = it->result.get();
    compile_estimate_.record(done.seconds);
    ++counters_.winner_compiles;
    ProblemOutcome& outcome = outcomes_[it->outcome];
    if (done.error.empty()) {
      outcome.winner.kernel_key = done.kernel_key;
      db_.save_winner(outcome.key, outcome.winner);
    } else {
      say(outcome.winner.config + ": winner not compiled alone: " + done.error);
    }
    it = winner_compiles_.erase(it);
  }
}

void TuneRun::tune_problem(ProblemOutcome& outcome, ShapeBench& bench, double share) {
  TunedFamily& tuned = family(outcome.path);
  const TuningKey& key = outcome.key;
  const MatmulShapeKey shape = shape_of(key);
  const int M = key.m_bucket;
  const std::string default_config = tuned.default_config(shape, M);
  const std::vector<CandidateFootprint> footprints = tuned.footprints(shape, M);
  const std::vector<CandidateVerdict> verdicts = prune_before_compile(footprints, device_, M);
  std::vector<SearchCandidate> candidates;
  for (size_t i : validation_order(footprints, default_config, key)) {
    SearchCandidate candidate{verdicts[i].config, verdicts[i].status, verdicts[i].detail};
    if (candidate.verdict == TrialStatus::ok) {
      if (const std::optional<CandidateVerdict> compiled = tuned.verdict(candidate.config)) {
        candidate.verdict = compiled->status;
        candidate.detail = compiled->detail;
      }
    }
    candidates.push_back(std::move(candidate));
  }

  const int copies = M >= kComputeBoundBucket ? 2 : bench.copies();
  MeasureOptions measure_options = measure_options_for(10);
  const auto launch = [&](const std::string& config) -> LaunchProduct {
    return [&tuned, config, shape, M](const MatmulOperands& operands, StreamView stream) {
      tuned.launch(config, shape, M, operands, stream);
    };
  };
  const auto zeroed = [&](const std::string& config) {
    return tuned.scratch(config, shape, M).zeroed;
  };
  SearchHooks hooks;
  hooks.now = [&] { return seconds_since(start_); };
  hooks.validate = [&](const std::string& config) {
    ++counters_.validations;
    return bench.validate(M, tuned.tolerance(config), zeroed(config), launch(config));
  };
  hooks.calibrate = [&](const std::string& config) {
    ++counters_.timings;
    measure_options = measure_options_for(
        bench.time(copies, zeroed(config), launch(config), probe_measure_options()));
  };
  hooks.measure = [&](const std::string& config, int repetitions) {
    std::vector<double> samples;
    for (int r = 0; r < repetitions; ++r) {
      samples.push_back(bench.time(copies, zeroed(config), launch(config), measure_options));
      ++counters_.timings;
    }
    return samples;
  };
  hooks.save_trial = [&](const TrialRecord& trial) { db_.save_trial(key, trial); };
  SearchOptions search_options;
  search_options.share_seconds = share;
  const SearchResult result =
      search_problem(candidates, default_config, db_.trials(key), search_options, hooks);
  say(key.shape_label() + ": " + std::to_string(result.first_round) + " timed of " +
      std::to_string(result.survivors) + " valid of " + std::to_string(result.tried) +
      " tried of " + std::to_string(candidates.size()) + " candidates (share " +
      std::to_string(share).substr(0, 4) + " s)");
  if (!result.selection) {
    outcome.skipped = "no candidate matched the reference";
    return;
  }
  outcome.winner = winner_record(result, default_config);
  db_.save_winner(key, outcome.winner);  // at once; the kernel key follows its compile
  outcome.tuned = true;
  outcome.default_kept = result.selection->default_kept;
  ++counters_.tuned;
  start_winner_compile(size_t(&outcome - outcomes_.data()));
}

void TuneRun::decide(const BucketWork& work) {
  DecisionOutcome& outcome = decisions_[work.decision];
  std::vector<PathTiming> timings;
  double seconds = 0;
  for (size_t index : work.problems) {
    const ProblemOutcome& problem = outcomes_[index];
    seconds += problem.winner.tuning_seconds;
    if (!problem.winner.config.empty() && problem.winner.median_us > 0)
      timings.push_back({problem.path, problem.winner.config, problem.winner.median_us});
  }
  const TuningKey& key = outcome.key;
  const bool mma_available =
      !family(MatmulPath::mma).default_config(shape_of(key), key.m_bucket).empty();
  std::optional<DecisionRecord> decision =
      decide_path(timings, default_path(key.m_bucket, mma_available));
  if (!decision) {
    outcome.skipped = "no path has a timed winner";
    return;
  }
  decision->tuning_seconds = seconds;
  db_.save_decision(key, *decision);
  outcome.decision = *decision;
  outcome.decided = true;
  ++counters_.decisions;
}

// From the times of the kernels the path decisions chose: nothing is timed here.
void TuneRun::decide_fusion_of(const FusionWork& work) {
  DecisionOutcome& outcome = fusions_[work.fusion];
  const auto chosen_us = [&](size_t index) {
    const DecisionRecord& decision = decisions_[index].decision;
    return decision.choice.empty() ? 0.0 : decision.median_us;
  };
  std::vector<double> parts_us;
  for (size_t part : work.parts) parts_us.push_back(chosen_us(part));
  std::optional<DecisionRecord> decision =
      decide_fusion(chosen_us(work.fused), parts_us, work.parts_text);
  if (!decision) {
    outcome.skipped = "the fused shape or a part has no decided path";
    return;
  }
  db_.save_decision(outcome.key, *decision);
  outcome.decision = *decision;
  outcome.decided = true;
  ++counters_.fusions;
  say(outcome.key.shape_label() + " (" + outcome.projections + " = " + work.parts_text +
      "): " + decision->choice);
}

// Buckets [first, end) of one shape: one bench for all of them (when anything is to be timed).
void TuneRun::tune_shape(size_t first, size_t end, TuneBudget& budget, size_t& index) {
  int64_t max_rows = 0, scratch = 16;
  for (size_t b = first; b < end; ++b) {
    for (size_t p : buckets_[b].problems) {
      const ProblemOutcome& outcome = outcomes_[p];
      if (outcome.from_db) continue;
      max_rows = std::max<int64_t>(max_rows, outcome.key.m_bucket);
      TunedFamily& tuned = family(outcome.path);
      for (const CandidateVerdict& verdict : verdicts_before_compile(outcome)) {
        if (verdict.status != TrialStatus::ok) continue;
        scratch = std::max(
            scratch,
            tuned.scratch(verdict.config, shape_of(outcome.key), outcome.key.m_bucket).bytes);
      }
    }
  }
  std::unique_ptr<ShapeBench> bench;
  if (max_rows > 0) {
    bench = std::make_unique<ShapeBench>(backend_, buckets_[first].weights, max_rows, scratch,
                                         options_.max_weight_copies);
  }
  for (size_t b = first; b < end; ++b) {
    for (size_t p : buckets_[b].problems) {
      ProblemOutcome& outcome = outcomes_[p];
      if (outcome.from_db) continue;
      const double elapsed = seconds_since(start_);
      const double share = budget.share(index, elapsed, compile_estimate_.tail_reserve());
      say("[" + std::to_string(index + 1) + "/" + std::to_string(budget.problems()) + "] " +
          outcome.key.shape_label() + " (" + outcome.projections + "), ETA " +
          std::to_string(int(std::ceil(std::max(0.0, options_.budget_seconds - elapsed)))) + " s");
      ++index;
      tune_problem(outcome, *bench, share);
      collect_winner_compiles(false);
    }
    if (!decisions_[buckets_[b].decision].from_db) decide(buckets_[b]);
  }
}

std::vector<ProblemOutcome> TuneRun::run(const std::vector<TuneShape>& shapes,
                                         std::vector<DecisionOutcome>& decisions,
                                         std::vector<DecisionOutcome>& fusions) {
  find_problems(shapes);
  find_fusions(shapes);
  const bool pending =
      std::any_of(outcomes_.begin(), outcomes_.end(), [](auto& o) { return !o.from_db; }) ||
      std::any_of(decisions_.begin(), decisions_.end(), [](auto& d) { return !d.from_db; });
  if (pending && db_.read_only()) {
    for (ProblemOutcome& outcome : outcomes_) {
      if (!outcome.from_db) outcome.skipped = "tuning database is read-only";
    }
    for (DecisionOutcome& decision : decisions_) {
      if (!decision.from_db) decision.skipped = "tuning database is read-only";
    }
  } else if (pending) {  // else the warm path: no compile, no timing
    if (!db_.read_ceiling(fingerprint_)) {
      db_.save_read_ceiling(fingerprint_, measure_read_ceiling(backend_, service_));
      ++counters_.timings;
    }
    compile_candidates();
    std::vector<double> weights;
    for (const BucketWork& work : buckets_) {
      for (size_t p : work.problems) {
        const ProblemOutcome& outcome = outcomes_[p];
        if (outcome.from_db) continue;
        const size_t candidates =
            family(outcome.path).footprints(shape_of(outcome.key), outcome.key.m_bucket).size();
        weights.push_back(candidates > 1 ? 1.0 : kSingleCandidateWeight);
      }
    }
    BudgetPolicy policy;
    policy.total_seconds = options_.budget_seconds;
    policy.cap_seconds = options_.shape_cap_seconds;
    TuneBudget budget(policy, weights, seconds_since(start_), compile_estimate_.tail_reserve());
    size_t index = 0;
    for (size_t first = 0; first < buckets_.size();) {
      size_t end = first;
      while (end < buckets_.size() && buckets_[end].shape == buckets_[first].shape) ++end;
      tune_shape(first, end, budget, index);
      first = end;
    }
    collect_winner_compiles(true);
  }
  for (const FusionWork& work : fusion_work_) {
    DecisionOutcome& fusion = fusions_[work.fusion];
    if (fusion.from_db) continue;
    if (db_.read_only()) {
      fusion.skipped = "tuning database is read-only";
    } else {
      decide_fusion_of(work);
    }
  }
  decisions = std::move(decisions_);
  fusions = std::move(fusions_);
  return std::move(outcomes_);
}

}  // namespace

Autotuner::Autotuner(Backend& backend, KernelService& service, TuningDb& db, TuneOptions options)
    : backend_(backend), service_(service), db_(db), options_(std::move(options)) {}

std::vector<ProblemOutcome> Autotuner::tune(const std::vector<TuneShape>& shapes,
                                            const std::optional<AttentionGeometry>& attention) {
  const Clock::time_point start = Clock::now();
  counters_ = {};
  decisions_.clear();
  fusions_.clear();
  attention_.clear();
  TuneOptions options = options_;
  if (attention) {
    AttentionTuneOptions attention_options;
    attention_options.m_buckets = options_.m_buckets;
    attention_options.force = options_.force;
    attention_options.jobs = options_.jobs;
    attention_options.max_copies = options_.max_weight_copies;
    attention_options.deadline_seconds = options_.budget_seconds * options_.attention_share;
    attention_options.progress = options_.progress;
    AttentionTuneCounters spent;
    attention_ = tune_attention(backend_, service_, db_, *attention, attention_options, spent);
    counters_.attention = spent.decided;
    counters_.attention_from_db = spent.from_db;
    counters_.validations += spent.validations;
    counters_.timings += spent.timings;
    options.budget_seconds = std::max(options_.budget_seconds - spent.seconds, 1.0);
  }
  // TuneRun adds its own counts to the attention's.
  std::vector<ProblemOutcome> outcomes =
      TuneRun(backend_, service_, db_, options, counters_).run(shapes, decisions_, fusions_);
  counters_.seconds = seconds_since(start);
  return outcomes;
}

}  // namespace q4jit
