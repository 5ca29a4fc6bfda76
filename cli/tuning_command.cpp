// q4jit tuning export FILE / q4jit tuning import FILE: share winners and decisions (matmul paths,
// projection fusion) between machines of the same GPU type (tuner/tuning_exchange.hpp). Import
// checks this machine's device, architecture, driver and NVRTC and this build's kernel sources,
// and lists what it skipped; files exported before decisions were shared import too.
#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "runtime/platform.hpp"
#include "tuner/problem_key.hpp"
#include "tuner/tuning_exchange.hpp"

namespace q4jit::cli {

namespace {

struct TuningArgs {
  std::string file;
  std::string tuning_db;
};

void run_export(const TuningArgs& args) {
  const TuningDb db({default_tuning_db_path(args.tuning_db), {}});
  const nlohmann::json exported = export_winners(db);
  std::ofstream file(args.file, std::ios::binary);
  file << exported.dump(2) << "\n";
  if (!file) throw Error(args.file + ": cannot write the export");
  std::printf("exported %zu winners and %zu decisions to %s\n", exported["results"].size(),
              exported["decisions"].size(), args.file.c_str());
}

void run_import(const TuningArgs& args) {
  std::ifstream file(args.file, std::ios::binary);
  if (!file) throw Error(args.file + ": cannot open");
  nlohmann::json exported;
  try {
    exported = nlohmann::json::parse(file);
  } catch (const nlohmann::json::exception& error) {
    throw Error(args.file + ": not JSON: " + error.what());
  }
  export_version(exported, args.file);  // a wrong file is said before looking for the GPU
  auto backend = open_gpu_backend();
  if (!backend)
    throw Error("tuning import: needs the GPU to check against: " +
                std::string(backend.error().what()));
  if (backend.value()->device_count() == 0) throw Error("tuning import: no GPU: no device found");
  auto compiler = open_compiler();
  if (!compiler) throw compiler.error();
  const DeviceFingerprint device =
      device_fingerprint(backend.value()->device_info(0), *compiler.value());
  const ImportPlan plan = plan_import(exported, device, tuning_source_hashes(), args.file);
  TuningDb db({default_tuning_db_path(args.tuning_db), {}});
  if (db.read_only())
    throw Error(db.path().string() + ": read-only (newer schema): nothing imported");
  for (const ResultRow& row : plan.accepted) db.save_winner(row.key, row.winner);
  for (const DecisionRow& row : plan.decisions) db.save_decision(row.key, row.decision);
  for (const std::string& line : plan.skipped) std::printf("skipped %s\n", line.c_str());
  std::printf("imported %zu winners and %zu decisions, skipped %zu\n", plan.accepted.size(),
              plan.decisions.size(), plan.skipped.size());
}

}  // namespace

void add_tuning_command(CLI::App& app) {
  auto args = std::make_shared<TuningArgs>();
  CLI::App* tuning = app.add_subcommand("tuning", "Export or import tuning winners and decisions");
  tuning->require_subcommand(1);
  tuning->add_option("--tuning-db", args->tuning_db, "Tuning database file");
  CLI::App* exporting =
      tuning->add_subcommand("export", "Write every winner and decision to a JSON file");
  exporting->add_option("file", args->file, "Output JSON file")->required();
  exporting->callback([args] { run_export(*args); });
  CLI::App* importing = tuning->add_subcommand(
      "import", "Read winners and decisions tuned on a machine of the same GPU type");
  importing->add_option("file", args->file, "A file written by 'q4jit tuning export'")->required();
  importing->callback([args] { run_import(*args); });
}

}  // namespace q4jit::cli
