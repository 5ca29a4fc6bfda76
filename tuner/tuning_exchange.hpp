// Sharing tuning between machines of the same GPU type: export the results table (winners) and
// the decisions table (matmul paths, projection fusion, attention paths and splits) as JSON; import
// only rows whose device (name, architecture, SM count, driver, NVRTC) matches this machine's and
// whose source hash matches this build's (a winner's kernel family; a decision's kind, whose hash
// covers every family it compares), saying what was skipped. Files of export version 1 (winners
// only, before decisions were shared) still import. Trials stay behind: they describe the other
// machine's run. Not here: the command line.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/tuning_db.hpp"

namespace q4jit {

// Every winner and every decision of `db` (export version 2).
nlohmann::json export_winners(const TuningDb& db);

struct ImportPlan {
  std::vector<ResultRow> accepted;     // winners to save
  std::vector<DecisionRow> decisions;  // decisions to save
  std::vector<std::string> skipped;    // one line per skipped row: the problem and why
};

// This build's source hash of every family a winner or decision can name: the kernel families,
// dequant_gemm, matmul_path, projection_fusion, attention_path and attention_split. (A build
// older than the attention decisions skips them on import as an unknown family: the export
// format is unchanged, version 2.)
std::map<std::string, std::string> tuning_source_hashes();

// The export version of `exported` (1 or 2); Error naming `source` when the JSON is not an export
// of a version this build reads. plan_import checks it too; callers may check before opening a
// GPU.
int export_version(const nlohmann::json& exported, const std::string& source);

// source_hashes: family name -> this build's source hash. Error naming `source` when the JSON
// is not an export of a version this build reads (1 or 2).
ImportPlan plan_import(const nlohmann::json& exported, const DeviceFingerprint& device,
                       const std::map<std::string, std::string>& source_hashes,
                       const std::string& source);

}  // namespace q4jit
