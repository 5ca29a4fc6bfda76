// The tuning database: per problem (device, kernel family and its source hash, shape, M bucket)
// the winning configuration with its timings, every candidate tried (trials), the decisions
// between alternatives beyond one family (which matmul path runs a shape at an M bucket; whether
// fused projections beat their parts) and each device's measured read ceiling. SQLite, one file
// shared by concurrent processes. The schema, the migrations and the invariants are described at
// the top of tuning_db.cpp.
// Not here: choosing candidates or timing them (tuner/), compiled kernels (kernel_store.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;

namespace q4jit {

// PRAGMA user_version of the schema this build writes. Bump it with a migration step in
// tuning_db.cpp whenever a table or column changes.
inline constexpr int kTuningSchemaVersion = 3;

// What identifies a GPU for tuning: a new driver or NVRTC makes a new device (old rows stay).
struct DeviceFingerprint {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int arch = 0;      // 90 for sm_90
  int sm_count = 0;
  int driver_version = 0;     // 13000
  std::string nvrtc_version;  // "13-0"

  bool operator==(const DeviceFingerprint&) const = default;
};

// The problem a winner answers. Everything that changes which configuration is fastest.
struct TuningKey {
  DeviceFingerprint device;
  std::string family;       // "q4_matmul"
  std::string source_hash;  // SHA-256 of the family's kernel source (hex)
  int64_t K = 0;
  int64_t N = 0;
  int64_t group_size = 0;
  bool act_order = false;
  int m_bucket = 1;  // 1, 2, 4, 8, 16, 32, 64, ...
  std::string dtype = "f16";

  // "q4_matmul K4096 N12288 g128 act m1 f16" (no device): for progress lines and reports.
  std::string shape_label() const;
  bool operator==(const TuningKey&) const = default;
};

// How one candidate ended. Only `ok` candidates are ever timed or chosen.
enum class TrialStatus {
  ok,
  wrong_result,
  compile_failed,
  launch_failed,
  pruned_smem,          // shared memory above the device's opt-in limit
  pruned_threads,       // more threads per block than the device allows
  pruned_divisibility,  // the shape does not divide as the configuration needs
  pruned_m_tile,        // rows per tile larger than the M bucket
  pruned_spills,        // local memory per thread above the limit after compiling
  pruned_occupancy,     // zero blocks fit on an SM
};
std::string to_string(TrialStatus status);
std::optional<TrialStatus> parse_trial_status(const std::string& text);
bool is_pruned(TrialStatus status);

struct TrialRecord {
  std::string config;
  TrialStatus status = TrialStatus::ok;
  double median_us = 0;  // 0 unless timed
  double min_us = 0;
  double p90_us = 0;
  int repetitions = 0;  // timing repetitions (each a median over graph launches)
  int rung = 0;         // successive-halving round reached (0: not timed)
  double relative_error = 0;
  std::string detail;  // why it failed or was pruned
};

struct WinnerRecord {
  std::string config;
  std::string default_config;
  double median_us = 0;
  double min_us = 0;
  double p90_us = 0;
  double default_us = 0;  // the default's median in the same final interleaved round
  int repetitions = 0;
  int candidates_tried = 0;   // enumerated for this problem, pruned ones included
  int candidates_failed = 0;  // wrong_result, compile_failed, launch_failed
  double tuning_seconds = 0;
  std::string kernel_key;  // the compiled winner's kernel-store hash: a cold start skips NVRTC
};

struct ResultRow {
  TuningKey key;
  WinnerRecord winner;
};

// A choice between alternatives that are not configurations of one family, keyed like a winner:
// family names the kind of decision ("matmul_path", "projection_fusion", "attention_path",
// "attention_split"), source_hash covers
// every family it compares.
struct DecisionRecord {
  std::string choice;  // the alternative taken: "gemv", "mma", "dequant_gemm"; "fused", "separate"
  std::string config;  // its configuration (its family's winner); a fusion: the parts' N "512+256"
  double median_us = 0;        // its time
  std::string default_choice;  // what the built-in defaults take here
  double default_us = 0;       // its time; 0 when it was not measured
  // Every alternative measured, with its time: [("gemv", 12.5), ("mma", 10.25)].
  std::vector<std::pair<std::string, double>> alternatives;
  double tuning_seconds = 0;
};

struct DecisionRow {
  TuningKey key;
  DecisionRecord decision;
};

struct TuningDbOptions {
  std::filesystem::path path;
  // One-line notices (newer schema, corrupt file moved aside). Default: stderr with "q4jit: ".
  std::function<void(const std::string&)> notice;
  int busy_timeout_ms = 30000;
};

class TuningDb {
 public:
  // Opens or creates the file (and its folder), migrating an older schema. A newer schema opens
  // read-only with a notice; a corrupt file is renamed aside with a notice and a fresh one made.
  explicit TuningDb(TuningDbOptions options);
  ~TuningDb();
  TuningDb(const TuningDb&) = delete;
  TuningDb& operator=(const TuningDb&) = delete;

  // True when the file has a newer schema: nothing is read (defaults are used), writes are
  // ignored.
  bool read_only() const { return read_only_; }
  int file_schema_version() const { return file_version_; }
  const std::filesystem::path& path() const { return options_.path; }

  std::optional<WinnerRecord> find_winner(const TuningKey& key) const;
  std::vector<TrialRecord> trials(const TuningKey& key) const;
  // Each write is its own BEGIN IMMEDIATE transaction; a second save of the same key/config
  // replaces the first.
  void save_trial(const TuningKey& key, const TrialRecord& trial);
  void save_winner(const TuningKey& key, const WinnerRecord& winner);
  // Removes the winner, trials and decision of key (tune --force). Returns the rows removed.
  int64_t forget(const TuningKey& key);

  std::optional<DecisionRecord> find_decision(const TuningKey& key) const;
  // One BEGIN IMMEDIATE transaction; replaces an earlier decision of the same key.
  void save_decision(const TuningKey& key, const DecisionRecord& decision);
  // Every decision, sorted like results(); only devices whose name contains device_filter.
  std::vector<DecisionRow> decisions(const std::string& device_filter = "") const;

  void save_read_ceiling(const DeviceFingerprint& device, double bytes_per_second);
  std::optional<double> read_ceiling(const DeviceFingerprint& device) const;

  // Every winner, sorted by device, family, K, N, group size, act-order, M bucket; only devices
  // whose name contains device_filter when it is not empty.
  std::vector<ResultRow> results(const std::string& device_filter = "") const;
  std::vector<DeviceFingerprint> devices() const;

  // "ok", or what PRAGMA integrity_check found.
  std::string integrity_check() const;

 private:
  void open_writable();
  void open_read_only();
  void create_or_migrate();
  void move_corrupt_aside(const std::string& reason);
  int64_t device_id(const DeviceFingerprint& device, bool create) const;

  TuningDbOptions options_;
  sqlite3* db_ = nullptr;
  bool read_only_ = false;
  int file_version_ = 0;
};

// $Q4JIT_TUNING_DB, else $XDG_CACHE_HOME/q4jit/tuning.sqlite3, else
// $HOME/.cache/q4jit/tuning.sqlite3; override_path wins when not empty.
std::filesystem::path default_tuning_db_path(const std::string& override_path = "");

}  // namespace q4jit
