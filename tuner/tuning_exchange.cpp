// Export and import of winners (tuning_exchange.hpp).
#include "tuner/tuning_exchange.hpp"

#include "common/error.hpp"

namespace q4jit {

namespace {

constexpr const char* kFormat = "q4jit-tuning-winners";
constexpr int kFormatVersion = 1;

ResultRow parse_row(const nlohmann::json& item) {
  ResultRow row;
  const nlohmann::json& device = item.at("device");
  row.key.device = {device.at("name"), device.at("arch"), device.at("sm_count"),
                    device.at("driver_version"), device.at("nvrtc_version")};
  row.key.family = item.at("family");
  row.key.source_hash = item.at("source_hash");
  row.key.K = item.at("K");
  row.key.N = item.at("N");
  row.key.group_size = item.at("group_size");
  row.key.act_order = item.at("act_order");
  row.key.m_bucket = item.at("m_bucket");
  row.key.dtype = item.at("dtype");
  WinnerRecord& w = row.winner;
  w.config = item.at("config");
  w.default_config = item.at("default_config");
  w.median_us = item.at("median_us");
  w.min_us = item.at("min_us");
  w.p90_us = item.at("p90_us");
  w.default_us = item.at("default_us");
  w.repetitions = item.at("repetitions");
  w.candidates_tried = item.at("candidates_tried");
  w.candidates_failed = item.at("candidates_failed");
  w.tuning_seconds = item.at("tuning_seconds");
  w.kernel_key = item.at("kernel_key");
  return row;
}

}  // namespace

nlohmann::json export_winners(const TuningDb& db) {
  nlohmann::json rows = nlohmann::json::array();
  for (const ResultRow& row : db.results()) {
    const TuningKey& key = row.key;
    const WinnerRecord& w = row.winner;
    rows.push_back({{"device",
                     {{"name", key.device.name},
                      {"arch", key.device.arch},
                      {"sm_count", key.device.sm_count},
                      {"driver_version", key.device.driver_version},
                      {"nvrtc_version", key.device.nvrtc_version}}},
                    {"family", key.family},
                    {"source_hash", key.source_hash},
                    {"K", key.K},
                    {"N", key.N},
                    {"group_size", key.group_size},
                    {"act_order", key.act_order},
                    {"m_bucket", key.m_bucket},
                    {"dtype", key.dtype},
                    {"config", w.config},
                    {"default_config", w.default_config},
                    {"median_us", w.median_us},
                    {"min_us", w.min_us},
                    {"p90_us", w.p90_us},
                    {"default_us", w.default_us},
                    {"repetitions", w.repetitions},
                    {"candidates_tried", w.candidates_tried},
                    {"candidates_failed", w.candidates_failed},
                    {"tuning_seconds", w.tuning_seconds},
                    {"kernel_key", w.kernel_key}});
  }
  return {{"format", kFormat}, {"version", kFormatVersion}, {"results", rows}};
}

ImportPlan plan_import(const nlohmann::json& exported, const DeviceFingerprint& device,
                       const std::map<std::string, std::string>& source_hashes,
                       const std::string& source) {
  if (!exported.is_object() || exported.value("format", "") != kFormat) {
    throw Error(source + ": not a q4jit tuning export (no \"format\": \"" + kFormat + "\")");
  }
  if (exported.value("version", 0) != kFormatVersion) {
    throw Error(source + ": export version " + std::to_string(exported.value("version", 0)) +
                " is not supported (this q4jit reads " + std::to_string(kFormatVersion) + ")");
  }
  ImportPlan plan;
  const nlohmann::json& rows = exported.at("results");
  for (size_t i = 0; i < rows.size(); ++i) {
    ResultRow row;
    try {
      row = parse_row(rows[i]);
    } catch (const nlohmann::json::exception& error) {
      throw Error(source + ": results[" + std::to_string(i) + "]: " + error.what());
    }
    const DeviceFingerprint& from = row.key.device;
    const std::string label = row.key.shape_label() + " from " + from.name;
    std::string reason;
    if (from.name != device.name) {
      reason = "another device (this one is " + device.name + ")";
    } else if (from.arch != device.arch || from.sm_count != device.sm_count) {
      reason = "architecture sm_" + std::to_string(from.arch) + " with " +
               std::to_string(from.sm_count) + " SMs, this one sm_" + std::to_string(device.arch) +
               " with " + std::to_string(device.sm_count);
    } else if (from.driver_version != device.driver_version ||
               from.nvrtc_version != device.nvrtc_version) {
      reason = "driver " + std::to_string(from.driver_version) + " / NVRTC " + from.nvrtc_version +
               ", this one " + std::to_string(device.driver_version) + " / NVRTC " +
               device.nvrtc_version + ": it would be retuned";
    } else if (!source_hashes.count(row.key.family)) {
      reason = "unknown kernel family '" + row.key.family + "'";
    } else if (source_hashes.at(row.key.family) != row.key.source_hash) {
      reason = "kernel source changed since it was tuned";
    }
    if (reason.empty()) {
      plan.accepted.push_back(std::move(row));
    } else {
      plan.skipped.push_back(label + ": " + reason);
    }
  }
  return plan;
}

}  // namespace q4jit
