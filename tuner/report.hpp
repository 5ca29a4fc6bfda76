// Tuning reports from the database: per problem the winner and its configuration, the default,
// the speedup over it, effective weight bandwidth against the device's measured read ceiling,
// candidates tried and failed, every trial, per shape and M bucket the matmul path decided
// (gemv, mma or dequant_gemm) with each path's time, and per fused shape (qkv, gate_up) and M
// bucket whether fusing pays (fused and separate times), and per attention geometry the prefill
// path per row bucket and the decode split per length bucket (attention_path.hpp). Rendered as
// JSON, CSV (one row per problem, the decisions of its shape and bucket in columns, then one row
// per attention decision: family attention_path or attention_split, K N group_size = D H Hkv,
// config the chosen one, default_config the default's choice, path and decided_path the
// choice), Markdown, or one self-contained HTML file with inline SVG charts (no script, no
// network).
// Not here: tuning (autotuner.hpp) or the command line (cli/report_command.cpp).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

struct ReportRow {
  TuningKey key;
  WinnerRecord winner;
  std::string path;                      // the path this family's winners serve ("gemv"), or empty
  std::string decided_path;              // the path decided at this shape and bucket, or empty
  std::optional<DecisionRecord> fusion;  // the fusion decision of this (fused) shape and bucket
  std::vector<TrialRecord> trials;       // sorted by status then time
  int64_t weight_bytes = 0;              // qweight + scales + qzeros (+ g_idx when act-order)
  double speedup = 0;                    // default_us / median_us; 0 when the default was not timed
  double tbps = 0;                       // weight_bytes over the winner's median
  double ceiling_fraction = 0;           // of the device's read ceiling; 0 when unknown
};

struct ReportDevice {
  DeviceFingerprint device;
  double read_ceiling_bps = 0;  // 0 when never measured
};

struct Report {
  std::vector<ReportDevice> devices;
  std::vector<ReportRow> rows;
  std::vector<DecisionRow> decisions;  // matmul path decisions, sorted like rows
  std::vector<DecisionRow> fusions;    // projection fusion decisions, sorted like rows
  std::vector<DecisionRow> attention;  // attention_path, then attention_split decisions
};

// device_filter: substring of the device name; shapes: only these weight shapes when given (an
// attention decision matches the shape {D, H, Hkv, false} of its geometry).
Report build_report(const TuningDb& db, const std::string& device_filter,
                    const std::optional<std::vector<MatmulShapeKey>>& shapes = std::nullopt);
// The time of a decision's alternative `name`, 0 when it has none.
double alternative_us(const DecisionRecord& decision, const std::string& name);
// Bytes a q4 matmul reads for its weights.
int64_t q4_weight_bytes(int64_t K, int64_t N, int64_t group_size, bool act_order);

std::string report_json(const Report& report);
std::string report_csv(const Report& report);
std::string report_markdown(const Report& report);
std::string report_html(const Report& report);
// format: json, csv, md or html; Error naming the format otherwise.
std::string render_report(const Report& report, const std::string& format);

}  // namespace q4jit
