// Sharing winners between machines of the same GPU type: export the results table as JSON;
// import only rows whose device (name, architecture, SM count, driver, NVRTC) matches this
// machine's and whose kernel source hash matches this build's family, saying what was skipped.
// Trials stay behind: they describe the other machine's run. Not here: the command line.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/tuning_db.hpp"

namespace q4jit {

nlohmann::json export_winners(const TuningDb& db);

struct ImportPlan {
  std::vector<ResultRow> accepted;
  std::vector<std::string> skipped;  // one line per skipped row: the problem and why
};

// source_hashes: family name -> this build's source hash. Error naming `source` when the JSON
// is not an export of this format.
ImportPlan plan_import(const nlohmann::json& exported, const DeviceFingerprint& device,
                       const std::map<std::string, std::string>& source_hashes,
                       const std::string& source);

}  // namespace q4jit
