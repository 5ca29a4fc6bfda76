// q4jit tune: finds the distinct matmul shapes of a model and tunes, per M bucket, those missing
// from the tuning database (tuner/autotuner.hpp): each path's family (gemv, mma, dequant_gemm)
// and the path decision, then whether each fused projection (qkv, gate_up) pays; first, the
// attention kernels of the model's geometry (prefill path per row bucket, decode split per
// length bucket). Prints per problem the winner, the default and the speedup, per bucket the
// path chosen, fused or separate and the attention choice, and the counts (compiles, timings)
// that show a second run does nothing.
// Needs a GPU: without one, a one-line error says so.
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "runtime/platform.hpp"
#include "tuner/autotuner.hpp"
#include "tuner/model_shapes.hpp"
#include "tuner/tune_missing.hpp"

namespace q4jit::cli {

namespace {

struct TuneArgs {
  std::string model;
  double budget = 60;
  double shape_cap = 0;
  std::string rows = "1,2,4,8,16,32,64,128,256,512,1024,2048";
  bool force = false;
  bool whole_gemm_space = false;
  bool json = false;
  bool quiet = false;
  bool verbose = false;
  std::string tuning_db;
  int max_seq_len = 0;
};

std::string outcome_state(const ProblemOutcome& outcome) {
  if (outcome.from_db) return "stored";
  if (!outcome.skipped.empty()) return "not tuned: " + outcome.skipped;
  return outcome.default_kept ? "tuned, default kept (< 2% apart)" : "tuned";
}

void print_outcomes(const std::vector<ProblemOutcome>& outcomes) {
  for (const ProblemOutcome& outcome : outcomes) {
    const WinnerRecord& w = outcome.winner;
    std::printf("%-44s %-10s ", outcome.key.shape_label().c_str(), outcome.projections.c_str());
    if (w.config.empty()) {
      std::printf("default (%s)\n", outcome_state(outcome).c_str());
      continue;
    }
    const double speedup = w.median_us > 0 && w.default_us > 0 ? w.default_us / w.median_us : 0;
    std::printf("%s %.2f us, default %.2f us, %.2fx [%s]\n", w.config.c_str(), w.median_us,
                w.default_us, speedup, outcome_state(outcome).c_str());
  }
}

std::string alternatives_text(const DecisionRecord& decision) {
  std::string text;
  for (const auto& [name, us] : decision.alternatives) {
    char item[64];
    std::snprintf(item, sizeof item, "%s%s %.2f us", text.empty() ? "" : ", ", name.c_str(), us);
    text += item;
  }
  return text;
}

// Decisions (paths or fusions) as text: the choice, its config, the default and every time.
void print_decisions(const std::vector<DecisionOutcome>& decisions) {
  for (const DecisionOutcome& outcome : decisions) {
    const DecisionRecord& d = outcome.decision;
    std::printf("%-44s %-10s ", outcome.key.shape_label().c_str(), outcome.projections.c_str());
    if (d.choice.empty()) {
      std::printf("default (%s)\n",
                  outcome.skipped.empty() ? "not decided" : outcome.skipped.c_str());
      continue;
    }
    std::printf("%s %s (default %s; %s) [%s]\n", d.choice.c_str(), d.config.c_str(),
                d.default_choice.c_str(), alternatives_text(d).c_str(),
                outcome.from_db ? "stored" : "decided");
  }
}

// choice: the name of the choice's field ("path"; "fusion" for fused or separate).
nlohmann::json decisions_json(const std::vector<DecisionOutcome>& decisions,
                              const std::string& choice) {
  nlohmann::json rows = nlohmann::json::array();
  for (const DecisionOutcome& outcome : decisions) {
    nlohmann::json alternatives = nlohmann::json::object();
    for (const auto& [name, us] : outcome.decision.alternatives) alternatives[name] = us;
    rows.push_back({{"K", outcome.key.K},
                    {"N", outcome.key.N},
                    {"group_size", outcome.key.group_size},
                    {"act_order", outcome.key.act_order},
                    {"m_bucket", outcome.key.m_bucket},
                    {"projections", outcome.projections},
                    {"state", outcome.from_db   ? "stored"
                              : outcome.decided ? "decided"
                                                : "not decided: " + outcome.skipped},
                    {choice, outcome.decision.choice},
                    {"config", outcome.decision.config},
                    {"median_us", outcome.decision.median_us},
                    {"default_" + choice, outcome.decision.default_choice},
                    {"default_us", outcome.decision.default_us},
                    {"alternatives_us", alternatives}});
  }
  return rows;
}

nlohmann::json outcomes_json(const std::vector<ProblemOutcome>& outcomes) {
  nlohmann::json rows = nlohmann::json::array();
  for (const ProblemOutcome& outcome : outcomes) {
    const WinnerRecord& w = outcome.winner;
    rows.push_back({{"problem", outcome.key.shape_label()},
                    {"family", outcome.key.family},
                    {"path", to_string(outcome.path)},
                    {"projections", outcome.projections},
                    {"K", outcome.key.K},
                    {"N", outcome.key.N},
                    {"group_size", outcome.key.group_size},
                    {"act_order", outcome.key.act_order},
                    {"m_bucket", outcome.key.m_bucket},
                    {"state", outcome_state(outcome)},
                    {"config", w.config},
                    {"default_config", w.default_config},
                    {"median_us", w.median_us},
                    {"default_us", w.default_us},
                    {"candidates_tried", w.candidates_tried},
                    {"candidates_failed", w.candidates_failed},
                    {"tuning_seconds", w.tuning_seconds}});
  }
  return rows;
}

void run_tune(const TuneArgs& args) {
  const std::vector<TuneShape> shapes = model_matmul_shapes(args.model);
  auto backend = open_gpu_backend();
  if (!backend) throw Error("tune: " + std::string(backend.error().what()));
  if (backend.value()->device_count() == 0) throw Error("tune: no GPU: no device found");
  backend.value()->select_device(0);
  auto compiler = open_compiler();
  if (!compiler) throw compiler.error();
  KernelStoreOptions store_options;
  store_options.dir = default_kernel_store_dir();
  const KernelStore store(store_options);
  KernelService service(*compiler.value(), &store);
  TuningDb db({default_tuning_db_path(args.tuning_db), {}});

  TuneOptions options;
  options.budget_seconds = args.budget;
  options.shape_cap_seconds = args.shape_cap;
  options.m_buckets = parse_m_buckets(args.rows);
  options.force = args.force;
  options.whole_gemm_space = args.whole_gemm_space;
  if (!args.quiet)
    options.progress = [](const std::string& line) {
      std::fprintf(stderr, "q4jit: tune: %s\n", line.c_str());
    };
  Autotuner tuner(*backend.value(), service, db, options);
  const std::vector<ProblemOutcome> outcomes =
      tuner.tune(shapes, model_attention_geometry(args.model, args.max_seq_len));
  const TuneCounters& counts = tuner.counters();
  const KernelCounters compiles = service.counters();
  if (args.json) {
    nlohmann::json report = {{"device", backend.value()->current_device().name},
                             {"tuning_db", db.path().string()},
                             {"problems", counts.problems},
                             {"from_db", counts.from_db},
                             {"tuned", counts.tuned},
                             {"compiles", compiles.compiles},
                             {"compile_failures", compiles.failures},
                             {"store_hits", compiles.store_hits},
                             {"validations", counts.validations},
                             {"timings", counts.timings},
                             {"decisions_made", counts.decisions},
                             {"decisions_stored", counts.decisions_from_db},
                             {"seconds", counts.seconds},
                             {"results", outcomes_json(outcomes)},
                             {"fusions_made", counts.fusions},
                             {"fusions_stored", counts.fusions_from_db},
                             {"decisions", decisions_json(tuner.decisions(), "path")},
                             {"fusions", decisions_json(tuner.fusions(), "fusion")},
                             {"attention_made", counts.attention},
                             {"attention_stored", counts.attention_from_db},
                             {"attention", decisions_json(tuner.attention(), "choice")}};
    std::printf("%s\n", report.dump().c_str());
    return;
  }
  std::printf("%s, %zu shapes, tuning database %s\n",
              backend.value()->current_device().name.c_str(), shapes.size(), db.path().c_str());
  print_outcomes(outcomes);
  std::printf("paths per shape and M bucket:\n");
  print_decisions(tuner.decisions());
  if (!tuner.fusions().empty()) {
    std::printf("fused projections per M bucket (config: the parts' N):\n");
    print_decisions(tuner.fusions());
  }
  if (!tuner.attention().empty()) {
    std::printf("attention per bucket (prefill: path per T; decode: split per length):\n");
    print_decisions(tuner.attention());
  }
  std::printf(
      "%lld problems: %lld tuned, %lld stored; %lld paths decided, %lld stored; %lld fusions "
      "decided, %lld stored; %lld attention decided, %lld stored; compiles %lld, timings %lld, "
      "validations %lld, %.1f s\n",
      (long long)counts.problems, (long long)counts.tuned, (long long)counts.from_db,
      (long long)counts.decisions, (long long)counts.decisions_from_db, (long long)counts.fusions,
      (long long)counts.fusions_from_db, (long long)counts.attention,
      (long long)counts.attention_from_db, (long long)compiles.compiles, (long long)counts.timings,
      (long long)counts.validations, counts.seconds);
  if (args.verbose) {
    // What a warm second run proves: compiles 0, timings 0.
    std::printf(
        "kernels: %s\ntuning: problems %lld, from the database %lld, tuned %lld, "
        "decisions %lld made %lld stored, validations %lld, timings %lld, winner compiles %lld\n",
        compiles.summary().c_str(), (long long)counts.problems, (long long)counts.from_db,
        (long long)counts.tuned, (long long)counts.decisions, (long long)counts.decisions_from_db,
        (long long)counts.validations, (long long)counts.timings,
        (long long)counts.winner_compiles);
  }
}

}  // namespace

void add_tune_command(CLI::App& app) {
  auto args = std::make_shared<TuneArgs>();
  CLI::App* tune = app.add_subcommand(
      "tune", "Tune the matmul and attention kernels of a model for this GPU (stored per shape)");
  tune->add_option("-m,--model", args->model, "Model folder (GPTQ)")->required();
  tune->add_option("--budget", args->budget,
                   "Seconds for the whole tune, compiling included (default 60)");
  tune->add_option(
      "--shape-cap", args->shape_cap,
      "Seconds per problem (shape, M bucket, path) at most (default: its fair share of the "
      "budget)");
  tune->add_option("--m", args->rows,
                   "Comma-separated rows (M) to tune, rounded up to buckets (default "
                   "1,2,...,2048: gemv up to 16, mma and dequant+gemm from 16)");
  tune->add_option("--max-seq-len", args->max_seq_len,
                   "Attention decisions up to this many positions (default: the model's "
                   "max_position_embeddings)");
  tune->add_flag("--gemm-space", args->whole_gemm_space,
                 "Dequant+gemm path: try every gemm_f16 configuration, not only the default");
  tune->add_flag(
      "--force", args->force,
      "Forget stored winners, trials, path, fusion and attention decisions of this model first");
  tune->add_flag("--json", args->json, "Print one JSON object instead of text");
  tune->add_flag("-q,--quiet", args->quiet, "No progress lines");
  tune->add_flag("-v,--verbose", args->verbose,
                 "Also print the compile counters (compiles, store hits) and timing counts");
  tune->add_option(
      "--tuning-db", args->tuning_db,
      "Tuning database file (default $Q4JIT_TUNING_DB, else $XDG_CACHE_HOME/q4jit/tuning.sqlite3)");
  tune->callback([args] { run_tune(*args); });
}

}  // namespace q4jit::cli
