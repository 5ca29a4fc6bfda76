// Export and import of winners and decisions (tuning_exchange.hpp).
#include "tuner/tuning_exchange.hpp"

#include <optional>

#include "common/error.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/problem_key.hpp"
#include "tuner/projection_fusion.hpp"

namespace q4jit {

namespace {

constexpr const char* kFormat = "q4jit-tuning-winners";
// 1: results only; 2: results and decisions.
constexpr int kFormatVersion = 2;
constexpr int kOldestVersion = 1;

nlohmann::json key_json(const TuningKey& key) {
  return {{"device",
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
          {"dtype", key.dtype}};
}

TuningKey parse_key(const nlohmann::json& item) {
  TuningKey key;
  const nlohmann::json& device = item.at("device");
  key.device = {device.at("name"), device.at("arch"), device.at("sm_count"),
                device.at("driver_version"), device.at("nvrtc_version")};
  key.family = item.at("family");
  key.source_hash = item.at("source_hash");
  key.K = item.at("K");
  key.N = item.at("N");
  key.group_size = item.at("group_size");
  key.act_order = item.at("act_order");
  key.m_bucket = item.at("m_bucket");
  key.dtype = item.at("dtype");
  return key;
}

nlohmann::json winner_json(const ResultRow& row) {
  const WinnerRecord& w = row.winner;
  nlohmann::json item = key_json(row.key);
  item.update({{"config", w.config},
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
  return item;
}

ResultRow parse_winner(const nlohmann::json& item) {
  ResultRow row;
  row.key = parse_key(item);
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

// Alternatives as a list of {"name", "us"}: their order is the order they were measured in.
nlohmann::json decision_json(const DecisionRow& row) {
  const DecisionRecord& d = row.decision;
  nlohmann::json alternatives = nlohmann::json::array();
  for (const auto& [name, us] : d.alternatives)
    alternatives.push_back({{"name", name}, {"us", us}});
  nlohmann::json item = key_json(row.key);
  item.update({{"choice", d.choice},
               {"config", d.config},
               {"median_us", d.median_us},
               {"default_choice", d.default_choice},
               {"default_us", d.default_us},
               {"alternatives", alternatives},
               {"tuning_seconds", d.tuning_seconds}});
  return item;
}

DecisionRow parse_decision(const nlohmann::json& item) {
  DecisionRow row;
  row.key = parse_key(item);
  DecisionRecord& d = row.decision;
  d.choice = item.at("choice");
  d.config = item.at("config");
  d.median_us = item.at("median_us");
  d.default_choice = item.at("default_choice");
  d.default_us = item.at("default_us");
  for (const nlohmann::json& alternative : item.at("alternatives"))
    d.alternatives.emplace_back(alternative.at("name"), alternative.at("us"));
  d.tuning_seconds = item.at("tuning_seconds");
  return row;
}

// Why a row of `key` cannot be used here, or empty when it can.
std::string skip_reason(const TuningKey& key, const DeviceFingerprint& device,
                        const std::map<std::string, std::string>& source_hashes) {
  const DeviceFingerprint& from = key.device;
  if (from.name != device.name) return "another device (this one is " + device.name + ")";
  if (from.arch != device.arch || from.sm_count != device.sm_count) {
    return "architecture sm_" + std::to_string(from.arch) + " with " +
           std::to_string(from.sm_count) + " SMs, this one sm_" + std::to_string(device.arch) +
           " with " + std::to_string(device.sm_count);
  }
  if (from.driver_version != device.driver_version || from.nvrtc_version != device.nvrtc_version) {
    return "driver " + std::to_string(from.driver_version) + " / NVRTC " + from.nvrtc_version +
           ", this one " + std::to_string(device.driver_version) + " / NVRTC " +
           device.nvrtc_version + ": it would be retuned";
  }
  const auto hash = source_hashes.find(key.family);
  if (hash == source_hashes.end()) return "unknown family '" + key.family + "'";
  if (hash->second != key.source_hash) return "kernel source changed since it was tuned";
  return "";
}

// Parses rows[i] with `parse`, naming the row on a malformed one.
template <typename Parse>
auto parse_item(const nlohmann::json& rows, size_t i, const char* table, const std::string& source,
                Parse parse) {
  try {
    return parse(rows[i]);
  } catch (const nlohmann::json::exception& error) {
    throw Error(source + ": " + table + "[" + std::to_string(i) + "]: " + error.what());
  }
}

// exported[name] when it is of the wanted type, else nullopt (never a type error).
std::optional<std::string> text_field(const nlohmann::json& exported, const char* name) {
  const auto found = exported.find(name);
  if (found == exported.end() || !found->is_string()) return std::nullopt;
  return found->get<std::string>();
}

int integer_field(const nlohmann::json& exported, const char* name) {
  const auto found = exported.find(name);
  return found != exported.end() && found->is_number_integer() ? found->get<int>() : 0;
}

const nlohmann::json& table(const nlohmann::json& exported, const char* name,
                            const std::string& source) {
  const auto found = exported.find(name);
  if (found == exported.end() || !found->is_array())
    throw Error(source + ": no \"" + name + "\" list");
  return *found;
}

}  // namespace

nlohmann::json export_winners(const TuningDb& db) {
  nlohmann::json results = nlohmann::json::array();
  for (const ResultRow& row : db.results()) results.push_back(winner_json(row));
  nlohmann::json decisions = nlohmann::json::array();
  for (const DecisionRow& row : db.decisions()) decisions.push_back(decision_json(row));
  return {{"format", kFormat},
          {"version", kFormatVersion},
          {"results", results},
          {"decisions", decisions}};
}

std::map<std::string, std::string> tuning_source_hashes() {
  std::map<std::string, std::string> hashes;
  for (const KernelFamily& family : kernel_families())
    hashes[family.name] = family_source_hash(family);
  hashes[kDequantGemmFamily] = dequant_gemm_source_hash();
  hashes[kMatmulPathFamily] = matmul_path_source_hash();
  hashes[kProjectionFusionFamily] = projection_fusion_source_hash();
  hashes[kAttentionPathFamily] = attention_path_source_hash();
  hashes[kAttentionSplitFamily] = attention_split_source_hash();
  return hashes;
}

int export_version(const nlohmann::json& exported, const std::string& source) {
  if (!exported.is_object() || text_field(exported, "format") != kFormat) {
    throw Error(source + ": not a q4jit tuning export (no \"format\": \"" + kFormat + "\")");
  }
  const int version = integer_field(exported, "version");
  if (version < kOldestVersion || version > kFormatVersion) {
    throw Error(source + ": export version " + std::to_string(version) +
                " is not supported (this q4jit reads " + std::to_string(kOldestVersion) + " to " +
                std::to_string(kFormatVersion) + ")");
  }
  return version;
}

ImportPlan plan_import(const nlohmann::json& exported, const DeviceFingerprint& device,
                       const std::map<std::string, std::string>& source_hashes,
                       const std::string& source) {
  const int version = export_version(exported, source);
  ImportPlan plan;
  const nlohmann::json& results = table(exported, "results", source);
  for (size_t i = 0; i < results.size(); ++i) {
    ResultRow row = parse_item(results, i, "results", source, parse_winner);
    const std::string reason = skip_reason(row.key, device, source_hashes);
    if (reason.empty()) {
      plan.accepted.push_back(std::move(row));
    } else {
      plan.skipped.push_back(row.key.shape_label() + " from " + row.key.device.name + ": " +
                             reason);
    }
  }
  if (version < 2) return plan;  // decisions were not exported yet
  const nlohmann::json& decisions = table(exported, "decisions", source);
  for (size_t i = 0; i < decisions.size(); ++i) {
    DecisionRow row = parse_item(decisions, i, "decisions", source, parse_decision);
    const std::string reason = skip_reason(row.key, device, source_hashes);
    if (reason.empty()) {
      plan.decisions.push_back(std::move(row));
    } else {
      plan.skipped.push_back("decision " + row.key.shape_label() + " from " + row.key.device.name +
                             ": " + reason);
    }
  }
  return plan;
}

}  // namespace q4jit
