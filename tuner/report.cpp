// Tuning reports (report.hpp). Numbers are printed with fixed precision so that a report of the
// same database is the same bytes (the format tests compare against checked-in files).
#include "tuner/report.hpp"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/projection_fusion.hpp"

namespace q4jit {

namespace {

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string shape_text(const TuningKey& key) {
  return std::to_string(key.K) + "x" + std::to_string(key.N) + " g" +
         std::to_string(key.group_size) + (key.act_order ? " act" : "");
}

bool timed(const TrialRecord& trial) {
  return trial.status == TrialStatus::ok && trial.median_us > 0;
}

int failures(const ReportRow& row) {
  return row.winner.candidates_failed;
}

bool same_problem(const TuningKey& a, const TuningKey& b) {
  return a.device == b.device && a.K == b.K && a.N == b.N && a.group_size == b.group_size &&
         a.act_order == b.act_order && a.m_bucket == b.m_bucket && a.dtype == b.dtype;
}

// "gemv", or "mma (chosen)" when the decision at its shape and bucket takes this row's path.
std::string path_text(const ReportRow& row) {
  if (row.path.empty()) return "";
  return row.path + (row.path == row.decided_path ? " (chosen)" : "");
}

std::string alternatives_text(const DecisionRecord& decision) {
  std::string text;
  for (const auto& [name, us] : decision.alternatives) {
    text += (text.empty() ? "" : ", ") + name + " " + fixed(us, 2);
  }
  return text;
}

// "1.08x": how much longer the parts take than the fused matmul (above 1: fusing pays).
std::string fusion_gain_text(const DecisionRecord& fusion) {
  const double fused = alternative_us(fusion, kFusedChoice);
  return fused > 0 ? fixed(alternative_us(fusion, kSeparateChoice) / fused, 2) + "x" : "";
}

// "prefill" or "decode" for an attention decision's family.
std::string attention_kind(const TuningKey& key) {
  return key.family == kAttentionPathFamily ? "prefill" : "decode";
}

// "H32/8 D128": an attention decision's geometry (K = D, N = H, group_size = Hkv).
std::string geometry_text(const TuningKey& key) {
  return "H" + std::to_string(key.N) + "/" + std::to_string(key.group_size) + " D" +
         std::to_string(key.K);
}

}  // namespace

double alternative_us(const DecisionRecord& decision, const std::string& name) {
  for (const auto& [alternative, us] : decision.alternatives) {
    if (alternative == name) return us;
  }
  return 0;
}

int64_t q4_weight_bytes(int64_t K, int64_t N, int64_t group_size, bool act_order) {
  const int64_t G = group_size > 0 ? K / group_size : 1;
  return K / 8 * N * 4 + G * N * 2 + G * (N / 8) * 4 + (act_order ? K * 4 : 0);
}

Report build_report(const TuningDb& db, const std::string& device_filter,
                    const std::optional<std::vector<MatmulShapeKey>>& shapes) {
  Report report;
  for (const DeviceFingerprint& device : db.devices()) {
    if (device.name.find(device_filter) == std::string::npos) continue;
    report.devices.push_back({device, db.read_ceiling(device).value_or(0)});
  }
  const auto wanted = [&](const TuningKey& key) {
    return !shapes || std::any_of(shapes->begin(), shapes->end(), [&](const MatmulShapeKey& s) {
      return s.K == key.K && s.N == key.N && s.group_size == key.group_size &&
             s.act_order == key.act_order;
    });
  };
  for (DecisionRow& decision : db.decisions(device_filter)) {
    if (!wanted(decision.key)) continue;
    if (decision.key.family == kMatmulPathFamily) report.decisions.push_back(std::move(decision));
    if (decision.key.family == kProjectionFusionFamily)
      report.fusions.push_back(std::move(decision));
    if (decision.key.family == kAttentionPathFamily || decision.key.family == kAttentionSplitFamily)
      report.attention.push_back(std::move(decision));
  }
  for (const ResultRow& result : db.results(device_filter)) {
    const TuningKey& key = result.key;
    if (!wanted(key)) continue;
    ReportRow row;
    row.key = key;
    row.winner = result.winner;
    if (const std::optional<MatmulPath> path = path_of_family(key.family))
      row.path = to_string(*path);
    for (const DecisionRow& decision : report.decisions) {
      if (same_problem(decision.key, key)) row.decided_path = decision.decision.choice;
    }
    for (const DecisionRow& fusion : report.fusions) {
      if (same_problem(fusion.key, key)) row.fusion = fusion.decision;
    }
    row.trials = db.trials(key);
    std::stable_sort(row.trials.begin(), row.trials.end(),
                     [](const TrialRecord& a, const TrialRecord& b) {
                       if (timed(a) != timed(b)) return timed(a);
                       if (timed(a) && a.median_us != b.median_us) return a.median_us < b.median_us;
                       if (a.status != b.status) return int(a.status) < int(b.status);
                       return a.config < b.config;
                     });
    row.weight_bytes = q4_weight_bytes(key.K, key.N, key.group_size, key.act_order);
    if (row.winner.median_us > 0) {
      row.tbps = double(row.weight_bytes) / (row.winner.median_us * 1e-6) / 1e12;
      if (row.winner.default_us > 0) row.speedup = row.winner.default_us / row.winner.median_us;
      const double ceiling = db.read_ceiling(key.device).value_or(0);
      if (ceiling > 0) row.ceiling_fraction = row.tbps * 1e12 / ceiling;
    }
    report.rows.push_back(std::move(row));
  }
  return report;
}

namespace {

// The fields that name a decision's problem, first in each decision and fusion object.
nlohmann::ordered_json decision_key_json(const TuningKey& key) {
  return {{"device", key.device.name},
          {"K", key.K},
          {"N", key.N},
          {"group_size", key.group_size},
          {"act_order", key.act_order},
          {"m_bucket", key.m_bucket},
          {"dtype", key.dtype}};
}

}  // namespace

std::string report_json(const Report& report) {
  nlohmann::ordered_json json;
  json["devices"] = nlohmann::ordered_json::array();
  for (const ReportDevice& entry : report.devices) {
    json["devices"].push_back(
        {{"name", entry.device.name},
         {"arch", entry.device.arch},
         {"sm_count", entry.device.sm_count},
         {"driver_version", entry.device.driver_version},
         {"nvrtc_version", entry.device.nvrtc_version},
         {"read_ceiling_tbps", std::stod(fixed(entry.read_ceiling_bps / 1e12, 3))}});
  }
  json["results"] = nlohmann::ordered_json::array();
  for (const ReportRow& row : report.rows) {
    const TuningKey& key = row.key;
    const WinnerRecord& w = row.winner;
    nlohmann::ordered_json trials = nlohmann::ordered_json::array();
    for (const TrialRecord& trial : row.trials) {
      trials.push_back({{"config", trial.config},
                        {"status", to_string(trial.status)},
                        {"median_us", std::stod(fixed(trial.median_us, 3))},
                        {"rung", trial.rung},
                        {"detail", trial.detail}});
    }
    json["results"].push_back({{"device", key.device.name},
                               {"family", key.family},
                               {"path", row.path},
                               {"decided_path", row.decided_path},
                               {"K", key.K},
                               {"N", key.N},
                               {"group_size", key.group_size},
                               {"act_order", key.act_order},
                               {"m_bucket", key.m_bucket},
                               {"dtype", key.dtype},
                               {"source_hash", key.source_hash},
                               {"config", w.config},
                               {"default_config", w.default_config},
                               {"median_us", std::stod(fixed(w.median_us, 3))},
                               {"min_us", std::stod(fixed(w.min_us, 3))},
                               {"p90_us", std::stod(fixed(w.p90_us, 3))},
                               {"default_us", std::stod(fixed(w.default_us, 3))},
                               {"speedup", std::stod(fixed(row.speedup, 3))},
                               {"weight_bytes", row.weight_bytes},
                               {"tbps", std::stod(fixed(row.tbps, 3))},
                               {"ceiling_fraction", std::stod(fixed(row.ceiling_fraction, 3))},
                               {"repetitions", w.repetitions},
                               {"candidates_tried", w.candidates_tried},
                               {"candidates_failed", w.candidates_failed},
                               {"tuning_seconds", std::stod(fixed(w.tuning_seconds, 2))},
                               {"kernel_key", w.kernel_key},
                               {"trials", trials}});
  }
  json["decisions"] = nlohmann::ordered_json::array();
  for (const DecisionRow& row : report.decisions) {
    const DecisionRecord& d = row.decision;
    nlohmann::ordered_json alternatives = nlohmann::ordered_json::object();
    for (const auto& [name, us] : d.alternatives) alternatives[name] = std::stod(fixed(us, 3));
    nlohmann::ordered_json item = decision_key_json(row.key);
    item.update({{"path", d.choice},
                 {"config", d.config},
                 {"median_us", std::stod(fixed(d.median_us, 3))},
                 {"default_path", d.default_choice},
                 {"default_us", std::stod(fixed(d.default_us, 3))},
                 {"alternatives_us", alternatives},
                 {"tuning_seconds", std::stod(fixed(d.tuning_seconds, 2))}});
    json["decisions"].push_back(std::move(item));
  }
  json["fusions"] = nlohmann::ordered_json::array();
  for (const DecisionRow& row : report.fusions) {
    const DecisionRecord& d = row.decision;
    nlohmann::ordered_json item = decision_key_json(row.key);
    item.update({{"parts", d.config},
                 {"choice", d.choice},
                 {"fused_us", std::stod(fixed(alternative_us(d, kFusedChoice), 3))},
                 {"separate_us", std::stod(fixed(alternative_us(d, kSeparateChoice), 3))},
                 {"default", d.default_choice},
                 {"tuning_seconds", std::stod(fixed(d.tuning_seconds, 2))}});
    json["fusions"].push_back(std::move(item));
  }
  json["attention"] = nlohmann::ordered_json::array();
  for (const DecisionRow& row : report.attention) {
    const DecisionRecord& d = row.decision;
    nlohmann::ordered_json alternatives = nlohmann::ordered_json::object();
    for (const auto& [name, us] : d.alternatives) alternatives[name] = std::stod(fixed(us, 3));
    nlohmann::ordered_json item = decision_key_json(row.key);
    item.update({{"kind", attention_kind(row.key)},
                 {"heads", row.key.N},
                 {"kv_heads", row.key.group_size},
                 {"head_dim", row.key.K},
                 {"choice", d.choice},
                 {"config", d.config},
                 {"median_us", std::stod(fixed(d.median_us, 3))},
                 {"default", d.default_choice},
                 {"default_us", std::stod(fixed(d.default_us, 3))},
                 {"alternatives_us", alternatives},
                 {"tuning_seconds", std::stod(fixed(d.tuning_seconds, 2))}});
    json["attention"].push_back(std::move(item));
  }
  return json.dump(2) + "\n";
}

namespace {

// "fused,12.500,14.250", or ",," for a row without a fusion decision.
std::string fusion_columns(const ReportRow& row) {
  if (!row.fusion) return ",,";
  return row.fusion->choice + "," + fixed(alternative_us(*row.fusion, kFusedChoice), 3) + "," +
         fixed(alternative_us(*row.fusion, kSeparateChoice), 3);
}

std::string fusion_markdown(const Report& report) {
  if (report.fusions.empty()) return "";
  std::string out =
      "\n## Projection fusion\n\n| device | fused shape (KxN) | parts (N) | M | choice | fused us "
      "| "
      "separate us | separate / fused |\n|---|---|---|---|---|---|---|---|\n";
  for (const DecisionRow& row : report.fusions) {
    const DecisionRecord& d = row.decision;
    out += "| " + row.key.device.name + " | " + shape_text(row.key) + " | " + d.config + " | " +
           std::to_string(row.key.m_bucket) + " | " + d.choice + " | " +
           fixed(alternative_us(d, kFusedChoice), 2) + " | " +
           fixed(alternative_us(d, kSeparateChoice), 2) + " | " + fusion_gain_text(d) + " |\n";
  }
  return out;
}

std::string fusion_html(const Report& report) {
  if (report.fusions.empty()) return "";
  std::string out =
      "<h2>Projection fusion</h2>\n<table><tr><th>device</th><th>fused shape (KxN)</th>"
      "<th>parts (N)</th><th>M</th><th>choice</th><th>fused us</th><th>separate us</th>"
      "<th>separate / fused</th></tr>\n";
  for (const DecisionRow& row : report.fusions) {
    const DecisionRecord& d = row.decision;
    out += "<tr><td>" + escape_html(row.key.device.name) + "</td><td>" +
           escape_html(shape_text(row.key)) + "</td><td>" + escape_html(d.config) + "</td><td>" +
           std::to_string(row.key.m_bucket) + "</td><td>" + escape_html(d.choice) + "</td><td>" +
           fixed(alternative_us(d, kFusedChoice), 2) + "</td><td>" +
           fixed(alternative_us(d, kSeparateChoice), 2) + "</td><td>" + fusion_gain_text(d) +
           "</td></tr>\n";
  }
  return out + "</table>\n";
}

// "1.08x": the default's time over the chosen one's (1.00x when the default was kept).
std::string attention_gain_text(const DecisionRecord& d) {
  return d.median_us > 0 && d.default_us > 0 ? fixed(d.default_us / d.median_us, 2) + "x" : "";
}

std::string attention_markdown(const Report& report) {
  if (report.attention.empty()) return "";
  std::string out =
      "\n## Attention\n\n| device | kind | heads (H/Hkv D) | bucket | choice | config | us | "
      "default | default us | speedup | every choice (us) |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const DecisionRow& row : report.attention) {
    const DecisionRecord& d = row.decision;
    out += "| " + row.key.device.name + " | " + attention_kind(row.key) + " | " +
           geometry_text(row.key) + " | " + std::to_string(row.key.m_bucket) + " | " + d.choice +
           " | `" + d.config + "` | " + fixed(d.median_us, 2) + " | " + d.default_choice + " | " +
           fixed(d.default_us, 2) + " | " + attention_gain_text(d) + " | " + alternatives_text(d) +
           " |\n";
  }
  return out;
}

std::string attention_html(const Report& report) {
  if (report.attention.empty()) return "";
  std::string out =
      "<h2>Attention</h2>\n<table><tr><th>device</th><th>kind</th><th>heads (H/Hkv D)</th>"
      "<th>bucket</th><th>choice</th><th>config</th><th>us</th><th>default</th>"
      "<th>default us</th><th>speedup</th><th>every choice (us)</th></tr>\n";
  for (const DecisionRow& row : report.attention) {
    const DecisionRecord& d = row.decision;
    out += "<tr><td>" + escape_html(row.key.device.name) + "</td><td>" + attention_kind(row.key) +
           "</td><td>" + geometry_text(row.key) + "</td><td>" + std::to_string(row.key.m_bucket) +
           "</td><td>" + escape_html(d.choice) + "</td><td><code>" + escape_html(d.config) +
           "</code></td><td>" + fixed(d.median_us, 2) + "</td><td>" +
           escape_html(d.default_choice) + "</td><td>" + fixed(d.default_us, 2) + "</td><td>" +
           attention_gain_text(d) + "</td><td>" + escape_html(alternatives_text(d)) +
           "</td></tr>\n";
  }
  return out + "</table>\n";
}

// One CSV row per attention decision, in the winners' columns (report.hpp says which).
std::string attention_csv(const Report& report) {
  std::string out;
  for (const DecisionRow& row : report.attention) {
    const TuningKey& key = row.key;
    const DecisionRecord& d = row.decision;
    const double speedup = d.median_us > 0 && d.default_us > 0 ? d.default_us / d.median_us : 0;
    out += "\"" + key.device.name + "\"," + key.family + "," + std::to_string(key.K) + "," +
           std::to_string(key.N) + "," + std::to_string(key.group_size) + "," +
           (key.act_order ? "1" : "0") + "," + std::to_string(key.m_bucket) + "," + key.dtype +
           "," + d.config + "," + d.default_choice + "," + fixed(d.median_us, 3) + ",,," +
           fixed(d.default_us, 3) + "," + fixed(speedup, 3) + ",,,,," + fixed(d.tuning_seconds, 2) +
           "," + d.choice + "," + d.choice + ",,,\n";
  }
  return out;
}

}  // namespace

std::string report_csv(const Report& report) {
  std::string out =
      "device,family,K,N,group_size,act_order,m_bucket,dtype,config,default_config,median_us,"
      "min_us,p90_us,default_us,speedup,tbps,ceiling_fraction,candidates_tried,"
      "candidates_failed,tuning_seconds,path,decided_path,fusion,fused_us,separate_us\n";
  for (const ReportRow& row : report.rows) {
    const TuningKey& key = row.key;
    const WinnerRecord& w = row.winner;
    out += "\"" + key.device.name + "\"," + key.family + "," + std::to_string(key.K) + "," +
           std::to_string(key.N) + "," + std::to_string(key.group_size) + "," +
           (key.act_order ? "1" : "0") + "," + std::to_string(key.m_bucket) + "," + key.dtype +
           "," + w.config + "," + w.default_config + "," + fixed(w.median_us, 3) + "," +
           fixed(w.min_us, 3) + "," + fixed(w.p90_us, 3) + "," + fixed(w.default_us, 3) + "," +
           fixed(row.speedup, 3) + "," + fixed(row.tbps, 3) + "," + fixed(row.ceiling_fraction, 3) +
           "," + std::to_string(w.candidates_tried) + "," + std::to_string(failures(row)) + "," +
           fixed(w.tuning_seconds, 2) + "," + row.path + "," + row.decided_path + "," +
           fusion_columns(row) + "\n";
  }
  return out + attention_csv(report);
}

std::string report_markdown(const Report& report) {
  std::string out = "# q4jit tuning report\n\n";
  for (const ReportDevice& entry : report.devices) {
    out += "- " + entry.device.name + " (sm_" + std::to_string(entry.device.arch) + ", " +
           std::to_string(entry.device.sm_count) + " SMs, driver " +
           std::to_string(entry.device.driver_version) + ", NVRTC " + entry.device.nvrtc_version +
           "): read ceiling " +
           (entry.read_ceiling_bps > 0 ? fixed(entry.read_ceiling_bps / 1e12, 2) + " TB/s"
                                       : "not measured") +
           "\n";
  }
  out +=
      "\n| device | family | path | shape (KxN) | M | winner | default | us | default us | "
      "speedup | TB/s | of ceiling | tried | failed |\n";
  out += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const ReportRow& row : report.rows) {
    const WinnerRecord& w = row.winner;
    out += "| " + row.key.device.name + " | " + row.key.family + " | " + path_text(row) + " | " +
           shape_text(row.key) + " | " + std::to_string(row.key.m_bucket) + " | `" + w.config +
           "` | `" + w.default_config + "` | " + fixed(w.median_us, 2) + " | " +
           fixed(w.default_us, 2) + " | " + fixed(row.speedup, 2) + "x | " + fixed(row.tbps, 2) +
           " | " + fixed(100 * row.ceiling_fraction, 1) + "% | " +
           std::to_string(w.candidates_tried) + " | " + std::to_string(failures(row)) + " |\n";
  }
  if (!report.decisions.empty()) {
    out +=
        "\n## Matmul paths\n\n| device | shape (KxN) | M | path | config | us | default path | "
        "default us | every path (us) |\n|---|---|---|---|---|---|---|---|---|\n";
  }
  for (const DecisionRow& row : report.decisions) {
    const DecisionRecord& d = row.decision;
    out += "| " + row.key.device.name + " | " + shape_text(row.key) + " | " +
           std::to_string(row.key.m_bucket) + " | " + d.choice + " | `" + d.config + "` | " +
           fixed(d.median_us, 2) + " | " + d.default_choice + " | " + fixed(d.default_us, 2) +
           " | " + alternatives_text(d) + " |\n";
  }
  out += fusion_markdown(report);
  out += attention_markdown(report);
  for (const ReportRow& row : report.rows) {
    out += "\n## " + row.key.shape_label() +
           "\n\n| config | status | us | rung | detail |\n"
           "|---|---|---|---|---|\n";
    for (const TrialRecord& trial : row.trials) {
      out += "| `" + trial.config + "` | " + to_string(trial.status) + " | " +
             (timed(trial) ? fixed(trial.median_us, 2) : "") + " | " + std::to_string(trial.rung) +
             " | " + trial.detail + " |\n";
    }
  }
  return out;
}

namespace {

// Horizontal bars of each timed trial, fastest first; the winner green, the default orange.
std::string trial_chart(const ReportRow& row) {
  std::vector<const TrialRecord*> bars;
  for (const TrialRecord& trial : row.trials) {
    if (timed(trial)) bars.push_back(&trial);
  }
  if (bars.empty()) return "<p>no timed candidate</p>\n";
  double slowest = 0;
  for (const TrialRecord* trial : bars) slowest = std::max(slowest, trial->median_us);
  const int bar_height = 14, label_width = 300, chart_width = 400;
  const int height = int(bars.size()) * bar_height + 10;
  std::string svg = "<svg width=\"" + std::to_string(label_width + chart_width + 90) +
                    "\" height=\"" + std::to_string(height) +
                    "\" font-family=\"monospace\" font-size=\"11\">\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const TrialRecord& trial = *bars[i];
    const int y = int(i) * bar_height + 5;
    const int width = std::max(1, int(chart_width * trial.median_us / slowest));
    const char* color = trial.config == row.winner.config           ? "#2a9d3f"
                        : trial.config == row.winner.default_config ? "#e07b00"
                                                                    : "#7f8fa6";
    svg += "<text x=\"0\" y=\"" + std::to_string(y + 10) + "\">" + escape_html(trial.config) +
           "</text>";
    svg += "<rect x=\"" + std::to_string(label_width) + "\" y=\"" + std::to_string(y) +
           "\" width=\"" + std::to_string(width) + "\" height=\"" + std::to_string(bar_height - 3) +
           "\" fill=\"" + color + "\"/>";
    svg += "<text x=\"" + std::to_string(label_width + width + 4) + "\" y=\"" +
           std::to_string(y + 10) + "\">" + fixed(trial.median_us, 2) + " us</text>\n";
  }
  return svg + "</svg>\n";
}

// Per problem, the tuned time against the default's, as pairs of bars.
std::string speedup_chart(const Report& report) {
  double slowest = 0;
  for (const ReportRow& row : report.rows) {
    slowest = std::max({slowest, row.winner.median_us, row.winner.default_us});
  }
  if (slowest <= 0) return "";
  const int row_height = 30, label_width = 320, chart_width = 400;
  std::string svg = "<svg width=\"" + std::to_string(label_width + chart_width + 90) +
                    "\" height=\"" + std::to_string(int(report.rows.size()) * row_height + 10) +
                    "\" font-family=\"monospace\" font-size=\"11\">\n";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    const ReportRow& row = report.rows[i];
    const int y = int(i) * row_height + 5;
    svg += "<text x=\"0\" y=\"" + std::to_string(y + 16) + "\">" +
           escape_html(row.key.shape_label()) + "</text>";
    const std::pair<double, const char*> bars[] = {{row.winner.median_us, "#2a9d3f"},
                                                   {row.winner.default_us, "#e07b00"}};
    for (int b = 0; b < 2; ++b) {
      const int width = std::max(1, int(chart_width * bars[b].first / slowest));
      const int bar_y = y + b * 12;
      svg += "<rect x=\"" + std::to_string(label_width) + "\" y=\"" + std::to_string(bar_y) +
             "\" width=\"" + std::to_string(width) + "\" height=\"11\" fill=\"" + bars[b].second +
             "\"/>";
      svg += "<text x=\"" + std::to_string(label_width + width + 4) + "\" y=\"" +
             std::to_string(bar_y + 9) + "\">" + fixed(bars[b].first, 2) + " us</text>";
    }
    svg += "\n";
  }
  return svg + "</svg>\n";
}

}  // namespace

std::string report_html(const Report& report) {
  std::string out =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>q4jit tuning report</title>\n"
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}code{font-size:12px}</style>\n"
      "</head><body>\n<h1>q4jit tuning report</h1>\n<ul>\n";
  for (const ReportDevice& entry : report.devices) {
    out += "<li>" + escape_html(entry.device.name) + " (sm_" + std::to_string(entry.device.arch) +
           ", " + std::to_string(entry.device.sm_count) + " SMs, driver " +
           std::to_string(entry.device.driver_version) + ", NVRTC " +
           escape_html(entry.device.nvrtc_version) + "): read ceiling " +
           (entry.read_ceiling_bps > 0 ? fixed(entry.read_ceiling_bps / 1e12, 2) + " TB/s"
                                       : "not measured") +
           "</li>\n";
  }
  out += "</ul>\n<h2>Tuned (green) against default (orange)</h2>\n" + speedup_chart(report);
  out +=
      "<table><tr><th>problem</th><th>path</th><th>winner</th><th>default</th><th>us</th>"
      "<th>default us</th><th>speedup</th><th>TB/s</th><th>of ceiling</th><th>tried</th>"
      "<th>failed</th></tr>\n";
  for (const ReportRow& row : report.rows) {
    const WinnerRecord& w = row.winner;
    out += "<tr><td>" + escape_html(row.key.shape_label()) + "</td><td>" +
           escape_html(path_text(row)) + "</td><td><code>" + escape_html(w.config) +
           "</code></td><td><code>" + escape_html(w.default_config) + "</code></td><td>" +
           fixed(w.median_us, 2) + "</td><td>" + fixed(w.default_us, 2) + "</td><td>" +
           fixed(row.speedup, 2) + "x</td><td>" + fixed(row.tbps, 2) + "</td><td>" +
           fixed(100 * row.ceiling_fraction, 1) + "%</td><td>" +
           std::to_string(w.candidates_tried) + "</td><td>" + std::to_string(failures(row)) +
           "</td></tr>\n";
  }
  out += "</table>\n";
  if (!report.decisions.empty()) {
    out +=
        "<h2>Matmul paths</h2>\n<table><tr><th>device</th><th>shape (KxN)</th><th>M</th>"
        "<th>path</th><th>config</th><th>us</th><th>default path</th><th>default us</th>"
        "<th>every path (us)</th></tr>\n";
    for (const DecisionRow& row : report.decisions) {
      const DecisionRecord& d = row.decision;
      out += "<tr><td>" + escape_html(row.key.device.name) + "</td><td>" +
             escape_html(shape_text(row.key)) + "</td><td>" + std::to_string(row.key.m_bucket) +
             "</td><td>" + escape_html(d.choice) + "</td><td><code>" + escape_html(d.config) +
             "</code></td><td>" + fixed(d.median_us, 2) + "</td><td>" +
             escape_html(d.default_choice) + "</td><td>" + fixed(d.default_us, 2) + "</td><td>" +
             escape_html(alternatives_text(d)) + "</td></tr>\n";
    }
    out += "</table>\n";
  }
  out += fusion_html(report);
  out += attention_html(report);
  for (const ReportRow& row : report.rows) {
    out += "<h2>" + escape_html(row.key.shape_label()) + " on " + escape_html(row.key.device.name) +
           "</h2>\n" + trial_chart(row);
    int untimed = 0;
    for (const TrialRecord& trial : row.trials) untimed += !timed(trial);
    if (untimed > 0) {
      out += "<details><summary>" + std::to_string(untimed) +
             " candidates not timed</summary><table>\n";
      for (const TrialRecord& trial : row.trials) {
        if (timed(trial)) continue;
        out += "<tr><td><code>" + escape_html(trial.config) + "</code></td><td>" +
               to_string(trial.status) + "</td><td>" + escape_html(trial.detail) + "</td></tr>\n";
      }
      out += "</table></details>\n";
    }
  }
  return out + "</body></html>\n";
}

std::string render_report(const Report& report, const std::string& format) {
  if (format == "json") return report_json(report);
  if (format == "csv") return report_csv(report);
  if (format == "md") return report_markdown(report);
  if (format == "html") return report_html(report);
  throw Error("--format: '" + format + "' is not one of json, csv, md, html");
}

}  // namespace q4jit
