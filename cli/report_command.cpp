// q4jit report: the tuning database as JSON, CSV, Markdown or one self-contained HTML file
// (tuner/report.hpp), optionally for one device (name substring) or one model's shapes (its
// matmul shapes and its attention geometry). No GPU.
#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "tuner/model_shapes.hpp"
#include "tuner/report.hpp"
#include "tuner/tune_missing.hpp"

namespace q4jit::cli {

namespace {

struct ReportArgs {
  std::string format = "md";
  std::string output;
  std::string device;
  std::string model;
  std::string tuning_db;
};

void run_report(const ReportArgs& args) {
  std::optional<std::vector<MatmulShapeKey>> shapes;
  if (!args.model.empty()) {
    shapes.emplace();
    for (const TuneShape& shape : model_matmul_shapes(args.model)) shapes->push_back(shape.shape);
    const AttentionGeometry attention = model_attention_geometry(args.model);
    shapes->push_back({attention.head_dim, attention.heads, attention.kv_heads, false});
  }
  const std::filesystem::path path = default_tuning_db_path(args.tuning_db);
  if (!std::filesystem::exists(path))
    throw Error(path.string() + ": no tuning database yet (run q4jit tune)");
  const TuningDb db({path, {}});
  const std::string text = render_report(build_report(db, args.device, shapes), args.format);
  if (args.output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  std::ofstream file(args.output, std::ios::binary);
  file << text;
  if (!file) throw Error(args.output + ": cannot write the report");
  std::fprintf(stderr, "q4jit: report: wrote %s\n", args.output.c_str());
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* report =
      app.add_subcommand("report", "Report the tuning database (winners, speedups, every trial)");
  report->add_option("--format", args->format, "json, csv, md or html (default md)")
      ->check(CLI::IsMember({"json", "csv", "md", "html"}));
  report->add_option("-o,--output", args->output, "Write to this file instead of stdout");
  report->add_option("--device", args->device, "Only devices whose name contains this");
  report->add_option("--model", args->model,
                     "Only the matmul shapes and attention geometry of this model folder");
  report->add_option("--tuning-db", args->tuning_db, "Tuning database file");
  report->callback([args] { run_report(*args); });
}

}  // namespace q4jit::cli
