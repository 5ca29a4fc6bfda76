// NOTES ON THE DESIGN OF THE TUNING DATABASE
//
// Purpose: remember, per GPU and problem, which kernel configuration won, so that every run after
// the first one uses it with no compile and no timing. One SQLite file (default_tuning_db_path),
// shared by every q4jit process of the user; several may tune at once.
//
// Schema (version kTuningSchemaVersion = 3, in PRAGMA user_version; every table STRICT):
//
//   TABLE      KEY                                   COLUMNS
//   devices    id; unique (name, arch, sm_count,     read_ceiling_bps (v2)
//              driver_version, nvrtc_version)
//   results    device_id, family, source_hash, K,    config, median_us, min_us, repetitions,
//              N, group_size, act_order, m_bucket,   candidates_tried, tuning_seconds;
//              dtype                                 v2: p90_us, default_config, default_us,
//                                                    candidates_failed, kernel_key
//   trials     the results key + config (v2)         status, median_us, min_us, p90_us,
//                                                    repetitions, rung, relative_error, detail
//   decisions  the results key (v3; family is the    choice, config, median_us, default_choice,
//              decision's kind: "matmul_path",       default_us, alternatives ("gemv=12.5;
//              "projection_fusion", "attention_path" mma=10.25"), tuning_seconds
//              or "attention_split")
//
// History: version 1 had devices and results without the v2 columns and no trials table;
// version 2 had no decisions table. A fresh file is built by running every migration from 0, so
// fresh and migrated files are identical.
//
// Invariants:
//   (1) A winner's key is device fingerprint (name, arch, SM count, driver, NVRTC) + family +
//       source hash + shape + M bucket + dtype. A changed kernel source or a new driver or NVRTC
//       misses (and retunes) without touching the old rows, which stay for the report.
//   (2) A winner is written only after its candidate matched the reference (the tuner's rule;
//       trials with another status are never copied into results). A decision names only
//       alternatives whose winners matched the reference.
//   (3) Every write is one BEGIN IMMEDIATE transaction: writers queue on the busy timeout instead
//       of failing at commit; readers never block (WAL).
//   (4) Schema creation and migration happen inside one BEGIN IMMEDIATE transaction that re-reads
//       user_version, so two processes opening a new file at once migrate it once.
//   (5) A file with a newer user_version is opened read-only and never read or written: this
//       build does not know what its rows mean, so kernel defaults are used.
//   (6) A file SQLite reports as not a database or corrupt is renamed aside (with its -wal and
//       -shm) to <name>.corrupt-<unix time>, never deleted, and a fresh file takes its place.
#include "cache/tuning_db.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iterator>

#include "common/error.hpp"

namespace q4jit {

namespace fs = std::filesystem;

namespace {

constexpr const char* kKeyColumns =
    "device_id, family, source_hash, K, N, group_size, act_order, m_bucket, dtype";
constexpr const char* kKeyWhere =
    "device_id = ?1 AND family = ?2 AND source_hash = ?3 AND K = ?4 AND N = ?5 AND "
    "group_size = ?6 AND act_order = ?7 AND m_bucket = ?8 AND dtype = ?9";

// Migration i takes user_version i to i + 1.
const char* const kMigrations[] = {
    // 0 -> 1
    "CREATE TABLE devices(id INTEGER PRIMARY KEY, name TEXT NOT NULL, arch INTEGER NOT NULL,"
    " sm_count INTEGER NOT NULL, driver_version INTEGER NOT NULL, nvrtc_version TEXT NOT NULL,"
    " UNIQUE(name, arch, sm_count, driver_version, nvrtc_version)) STRICT;"
    "CREATE TABLE results(device_id INTEGER NOT NULL REFERENCES devices(id), family TEXT NOT NULL,"
    " source_hash TEXT NOT NULL, K INTEGER NOT NULL, N INTEGER NOT NULL,"
    " group_size INTEGER NOT NULL, act_order INTEGER NOT NULL, m_bucket INTEGER NOT NULL,"
    " dtype TEXT NOT NULL, config TEXT NOT NULL, median_us REAL NOT NULL, min_us REAL NOT NULL,"
    " repetitions INTEGER NOT NULL, candidates_tried INTEGER NOT NULL,"
    " tuning_seconds REAL NOT NULL,"
    " PRIMARY KEY(device_id, family, source_hash, K, N, group_size, act_order, m_bucket, dtype)"
    ") STRICT;",
    // 1 -> 2
    "ALTER TABLE devices ADD COLUMN read_ceiling_bps REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE results ADD COLUMN p90_us REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE results ADD COLUMN default_config TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE results ADD COLUMN default_us REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE results ADD COLUMN candidates_failed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE results ADD COLUMN kernel_key TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE trials(device_id INTEGER NOT NULL REFERENCES devices(id),"
    " family TEXT NOT NULL, source_hash TEXT NOT NULL, K INTEGER NOT NULL, N INTEGER NOT NULL,"
    " group_size INTEGER NOT NULL, act_order INTEGER NOT NULL, m_bucket INTEGER NOT NULL,"
    " dtype TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,"
    " median_us REAL NOT NULL, min_us REAL NOT NULL, p90_us REAL NOT NULL,"
    " repetitions INTEGER NOT NULL, rung INTEGER NOT NULL, relative_error REAL NOT NULL,"
    " detail TEXT NOT NULL, PRIMARY KEY(device_id, family, source_hash, K, N, group_size,"
    " act_order, m_bucket, dtype, config)) STRICT;",
    // 2 -> 3
    "CREATE TABLE decisions(device_id INTEGER NOT NULL REFERENCES devices(id),"
    " family TEXT NOT NULL, source_hash TEXT NOT NULL, K INTEGER NOT NULL, N INTEGER NOT NULL,"
    " group_size INTEGER NOT NULL, act_order INTEGER NOT NULL, m_bucket INTEGER NOT NULL,"
    " dtype TEXT NOT NULL, choice TEXT NOT NULL, config TEXT NOT NULL, median_us REAL NOT NULL,"
    " default_choice TEXT NOT NULL, default_us REAL NOT NULL, alternatives TEXT NOT NULL,"
    " tuning_seconds REAL NOT NULL, PRIMARY KEY(device_id, family, source_hash, K, N,"
    " group_size, act_order, m_bucket, dtype)) STRICT;",
};
static_assert(std::size(kMigrations) == kTuningSchemaVersion, "one migration per version");

constexpr TrialStatus kStatuses[] = {TrialStatus::ok,
                                     TrialStatus::wrong_result,
                                     TrialStatus::compile_failed,
                                     TrialStatus::launch_failed,
                                     TrialStatus::pruned_smem,
                                     TrialStatus::pruned_threads,
                                     TrialStatus::pruned_divisibility,
                                     TrialStatus::pruned_m_tile,
                                     TrialStatus::pruned_spills,
                                     TrialStatus::pruned_occupancy};

bool is_corruption(int code) {
  const int primary = code & 0xff;
  return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT;
}

// An error from SQLite; `code` is kept so open can tell corruption from other failures.
struct SqliteFailure {
  int code;
  std::string message;
};

[[noreturn]] void fail(sqlite3* db, int code, const std::string& what) {
  throw SqliteFailure{code, what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(code))};
}

// One prepared statement; bind by 1-based index, step, read columns.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    const int code = sqlite3_prepare_v2(db, sql.c_str(), -1, &statement_, nullptr);
    if (code != SQLITE_OK) fail(db, code, "prepare");
  }
  ~Statement() { sqlite3_finalize(statement_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, int64_t value) {
    sqlite3_bind_int64(statement_, index, value);
    return *this;
  }
  Statement& bind(int index, double value) {
    sqlite3_bind_double(statement_, index, value);
    return *this;
  }
  Statement& bind(int index, const std::string& value) {
    sqlite3_bind_text(statement_, index, value.c_str(), static_cast<int>(value.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  // True while a row is available.
  bool step() {
    const int code = sqlite3_step(statement_);
    if (code == SQLITE_ROW) return true;
    if (code == SQLITE_DONE) return false;
    fail(db_, code, "step");
  }
  int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
  double real(int column) const { return sqlite3_column_double(statement_, column); }
  std::string text(int column) const {
    const unsigned char* value = sqlite3_column_text(statement_, column);
    return value ? reinterpret_cast<const char*>(value) : "";
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* statement_ = nullptr;
};

void execute(sqlite3* db, const std::string& sql) {
  char* message = nullptr;
  const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  if (code != SQLITE_OK) {
    const std::string text = message ? message : sqlite3_errstr(code);
    sqlite3_free(message);
    throw SqliteFailure{code, text};
  }
}

int user_version(sqlite3* db) {
  Statement statement(db, "PRAGMA user_version");
  return statement.step() ? static_cast<int>(statement.integer(0)) : 0;
}

// Runs body inside BEGIN IMMEDIATE ... COMMIT, rolling back on any exception (invariant 3).
template <typename Body>
void write_transaction(sqlite3* db, Body body) {
  execute(db, "BEGIN IMMEDIATE");
  try {
    body();
    execute(db, "COMMIT");
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// Binds the key's columns as ?1..?9 (device id first).
void bind_key(Statement& statement, int64_t device, const TuningKey& key) {
  statement.bind(1, device).bind(2, key.family).bind(3, key.source_hash).bind(4, key.K);
  statement.bind(5, key.N).bind(6, key.group_size).bind(7, int64_t{key.act_order});
  statement.bind(8, int64_t{key.m_bucket}).bind(9, key.dtype);
}

void default_notice(const std::string& line) {
  std::fprintf(stderr, "q4jit: %s\n", line.c_str());
}

// Alternatives as stored: "gemv=12.5;mma=10.25" (names never hold '=' or ';').
std::string join_alternatives(const std::vector<std::pair<std::string, double>>& alternatives) {
  std::string text;
  for (const auto& [name, us] : alternatives) {
    char value[32];
    std::snprintf(value, sizeof value, "%.9g", us);
    text += (text.empty() ? "" : ";") + name + "=" + value;
  }
  return text;
}

// The inverse of join_alternatives; malformed items (a hand-edited file) are skipped.
std::vector<std::pair<std::string, double>> split_alternatives(const std::string& text) {
  std::vector<std::pair<std::string, double>> alternatives;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find(';', begin);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(begin, end - begin);
    const size_t equals = item.find('=');
    if (equals != std::string::npos && equals > 0) {
      const std::string number = item.substr(equals + 1);
      char* parsed_end = nullptr;
      const double us = std::strtod(number.c_str(), &parsed_end);
      if (!number.empty() && parsed_end == number.c_str() + number.size())
        alternatives.emplace_back(item.substr(0, equals), us);
    }
    begin = end + 1;
  }
  return alternatives;
}

}  // namespace

std::string to_string(TrialStatus status) {
  switch (status) {
    case TrialStatus::ok:
      return "ok";
    case TrialStatus::wrong_result:
      return "wrong_result";
    case TrialStatus::compile_failed:
      return "compile_failed";
    case TrialStatus::launch_failed:
      return "launch_failed";
    case TrialStatus::pruned_smem:
      return "pruned_smem";
    case TrialStatus::pruned_threads:
      return "pruned_threads";
    case TrialStatus::pruned_divisibility:
      return "pruned_divisibility";
    case TrialStatus::pruned_m_tile:
      return "pruned_m_tile";
    case TrialStatus::pruned_spills:
      return "pruned_spills";
    case TrialStatus::pruned_occupancy:
      return "pruned_occupancy";
  }
  return "unknown";
}

std::optional<TrialStatus> parse_trial_status(const std::string& text) {
  for (TrialStatus status : kStatuses) {
    if (to_string(status) == text) return status;
  }
  return std::nullopt;
}

bool is_pruned(TrialStatus status) {
  return to_string(status).starts_with("pruned_");
}

std::string TuningKey::shape_label() const {
  return family + " K" + std::to_string(K) + " N" + std::to_string(N) + " g" +
         std::to_string(group_size) + (act_order ? " act" : "") + " m" + std::to_string(m_bucket) +
         " " + dtype;
}

TuningDb::TuningDb(TuningDbOptions options) : options_(std::move(options)) {
  if (!options_.notice) options_.notice = default_notice;
  std::error_code ignored;
  if (options_.path.has_parent_path()) fs::create_directories(options_.path.parent_path(), ignored);
  try {
    open_writable();
  } catch (const SqliteFailure& failure) {
    if (!is_corruption(failure.code)) {
      throw Error(options_.path.string() + ": cannot open the tuning database: " + failure.message);
    }
    move_corrupt_aside(failure.message);
    try {
      open_writable();
    } catch (const SqliteFailure& again) {
      throw Error(options_.path.string() +
                  ": cannot create a fresh tuning database: " + again.message);
    }
  }
}

TuningDb::~TuningDb() {
  sqlite3_close_v2(db_);
}

void TuningDb::open_writable() {
  sqlite3_close_v2(db_);
  db_ = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  const int code = sqlite3_open_v2(options_.path.c_str(), &db_, flags, nullptr);
  if (code != SQLITE_OK) fail(db_, code, "open");
  sqlite3_busy_timeout(db_, options_.busy_timeout_ms);
  file_version_ = user_version(db_);  // the first read: a non-database fails here
  {
    Statement check(db_, "PRAGMA quick_check(1)");
    if (check.step() && check.text(0) != "ok") throw SqliteFailure{SQLITE_CORRUPT, check.text(0)};
  }
  if (file_version_ > kTuningSchemaVersion) {
    open_read_only();
    return;
  }
  execute(db_, "PRAGMA journal_mode=WAL");
  // In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last trials, which a
  // resumed tune measures again. FULL would fsync every trial (thousands per tune).
  execute(db_, "PRAGMA synchronous=NORMAL");
  execute(db_, "PRAGMA foreign_keys=ON");
  create_or_migrate();
}

void TuningDb::open_read_only() {
  sqlite3_close_v2(db_);
  db_ = nullptr;
  const int code = sqlite3_open_v2(options_.path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
  if (code != SQLITE_OK) fail(db_, code, "open read-only");
  read_only_ = true;
  options_.notice(options_.path.string() + ": schema version " + std::to_string(file_version_) +
                  " is newer than this q4jit's " + std::to_string(kTuningSchemaVersion) +
                  "; opened read-only, kernel defaults used");
}

void TuningDb::create_or_migrate() {
  if (file_version_ == kTuningSchemaVersion) return;
  write_transaction(db_, [&] {
    int version = user_version(db_);  // re-read under the write lock (invariant 4)
    for (; version < kTuningSchemaVersion; ++version) execute(db_, kMigrations[version]);
    execute(db_, "PRAGMA user_version = " + std::to_string(kTuningSchemaVersion));
  });
  file_version_ = kTuningSchemaVersion;
}

void TuningDb::move_corrupt_aside(const std::string& reason) {
  sqlite3_close_v2(db_);
  db_ = nullptr;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const std::string suffix =
      ".corrupt-" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  const std::string base = options_.path.string();
  std::error_code error;
  fs::rename(base, base + suffix, error);
  // Another process may have moved it first; the fresh file is then theirs.
  for (const char* companion : {"-wal", "-shm"}) {
    std::error_code ignored;
    if (fs::exists(base + companion, ignored))
      fs::rename(base + companion, base + suffix + companion, ignored);
  }
  options_.notice("error: " + base + ": not a usable tuning database (" + reason + "); kept as " +
                  base + suffix + ", starting a fresh one");
}

int64_t TuningDb::device_id(const DeviceFingerprint& device, bool create) const {
  const std::string where =
      " WHERE name = ?1 AND arch = ?2 AND sm_count = ?3 AND driver_version = ?4 AND "
      "nvrtc_version = ?5";
  auto bind = [&](Statement& statement) {
    statement.bind(1, device.name).bind(2, int64_t{device.arch}).bind(3, int64_t{device.sm_count});
    statement.bind(4, int64_t{device.driver_version}).bind(5, device.nvrtc_version);
  };
  if (create) {
    Statement insert(db_,
                     "INSERT OR IGNORE INTO devices(name, arch, sm_count, driver_version, "
                     "nvrtc_version) VALUES (?1, ?2, ?3, ?4, ?5)");
    bind(insert);
    insert.step();
  }
  Statement select(db_, "SELECT id FROM devices" + where);
  bind(select);
  return select.step() ? select.integer(0) : -1;
}

std::optional<WinnerRecord> TuningDb::find_winner(const TuningKey& key) const {
  if (read_only_) return std::nullopt;
  try {
    const int64_t device = device_id(key.device, false);
    if (device < 0) return std::nullopt;
    Statement select(db_,
                     std::string("SELECT config, default_config, median_us, min_us, p90_us, "
                                 "default_us, repetitions, candidates_tried, candidates_failed, "
                                 "tuning_seconds, kernel_key FROM results WHERE ") +
                         kKeyWhere);
    bind_key(select, device, key);
    if (!select.step()) return std::nullopt;
    WinnerRecord winner{select.text(0),         select.text(1),         select.real(2),
                        select.real(3),         select.real(4),         select.real(5),
                        int(select.integer(6)), int(select.integer(7)), int(select.integer(8)),
                        select.real(9),         select.text(10)};
    return winner;
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading a winner: " + failure.message);
  }
}

std::vector<TrialRecord> TuningDb::trials(const TuningKey& key) const {
  std::vector<TrialRecord> rows;
  if (read_only_) return rows;
  try {
    const int64_t device = device_id(key.device, false);
    if (device < 0) return rows;
    Statement select(db_,
                     std::string("SELECT config, status, median_us, min_us, p90_us, repetitions, "
                                 "rung, relative_error, detail FROM trials WHERE ") +
                         kKeyWhere + " ORDER BY config");
    bind_key(select, device, key);
    while (select.step()) {
      TrialRecord trial;
      trial.config = select.text(0);
      // An unknown status (written by a newer build of the same schema) counts as a failure.
      trial.status = parse_trial_status(select.text(1)).value_or(TrialStatus::launch_failed);
      trial.median_us = select.real(2);
      trial.min_us = select.real(3);
      trial.p90_us = select.real(4);
      trial.repetitions = int(select.integer(5));
      trial.rung = int(select.integer(6));
      trial.relative_error = select.real(7);
      trial.detail = select.text(8);
      rows.push_back(std::move(trial));
    }
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading trials: " + failure.message);
  }
  return rows;
}

void TuningDb::save_trial(const TuningKey& key, const TrialRecord& trial) {
  if (read_only_) return;
  try {
    write_transaction(db_, [&] {
      const int64_t device = device_id(key.device, true);
      Statement insert(db_, std::string("INSERT OR REPLACE INTO trials(") + kKeyColumns +
                                ", config, status, median_us, min_us, p90_us, repetitions, rung, "
                                "relative_error, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                                "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)");
      bind_key(insert, device, key);
      insert.bind(10, trial.config).bind(11, to_string(trial.status)).bind(12, trial.median_us);
      insert.bind(13, trial.min_us).bind(14, trial.p90_us).bind(15, int64_t{trial.repetitions});
      insert.bind(16, int64_t{trial.rung}).bind(17, trial.relative_error).bind(18, trial.detail);
      insert.step();
    });
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": saving a trial: " + failure.message);
  }
}

void TuningDb::save_winner(const TuningKey& key, const WinnerRecord& winner) {
  if (read_only_) return;
  try {
    write_transaction(db_, [&] {
      const int64_t device = device_id(key.device, true);
      Statement insert(db_, std::string("INSERT OR REPLACE INTO results(") + kKeyColumns +
                                ", config, default_config, median_us, min_us, p90_us, default_us,"
                                " repetitions, candidates_tried, candidates_failed, "
                                "tuning_seconds, kernel_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                                "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)");
      bind_key(insert, device, key);
      insert.bind(10, winner.config).bind(11, winner.default_config).bind(12, winner.median_us);
      insert.bind(13, winner.min_us).bind(14, winner.p90_us).bind(15, winner.default_us);
      insert.bind(16, int64_t{winner.repetitions}).bind(17, int64_t{winner.candidates_tried});
      insert.bind(18, int64_t{winner.candidates_failed}).bind(19, winner.tuning_seconds);
      insert.bind(20, winner.kernel_key);
      insert.step();
    });
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": saving a winner: " + failure.message);
  }
}

int64_t TuningDb::forget(const TuningKey& key) {
  if (read_only_) return 0;
  int64_t removed = 0;
  try {
    write_transaction(db_, [&] {
      const int64_t device = device_id(key.device, false);
      if (device < 0) return;
      for (const char* table : {"results", "trials", "decisions"}) {
        Statement remove(db_, std::string("DELETE FROM ") + table + " WHERE " + kKeyWhere);
        bind_key(remove, device, key);
        remove.step();
        removed += sqlite3_changes(db_);
      }
    });
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": forgetting " + key.shape_label() + ": " +
                failure.message);
  }
  return removed;
}

std::optional<DecisionRecord> TuningDb::find_decision(const TuningKey& key) const {
  if (read_only_) return std::nullopt;
  try {
    const int64_t device = device_id(key.device, false);
    if (device < 0) return std::nullopt;
    Statement select(db_,
                     std::string("SELECT choice, config, median_us, default_choice, default_us, "
                                 "alternatives, tuning_seconds FROM decisions WHERE ") +
                         kKeyWhere);
    bind_key(select, device, key);
    if (!select.step()) return std::nullopt;
    return DecisionRecord{select.text(0), select.text(1), select.real(2),
                          select.text(3), select.real(4), split_alternatives(select.text(5)),
                          select.real(6)};
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading a decision: " + failure.message);
  }
}

void TuningDb::save_decision(const TuningKey& key, const DecisionRecord& decision) {
  if (read_only_) return;
  try {
    write_transaction(db_, [&] {
      const int64_t device = device_id(key.device, true);
      Statement insert(db_, std::string("INSERT OR REPLACE INTO decisions(") + kKeyColumns +
                                ", choice, config, median_us, default_choice, default_us, "
                                "alternatives, tuning_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                                "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)");
      bind_key(insert, device, key);
      insert.bind(10, decision.choice).bind(11, decision.config).bind(12, decision.median_us);
      insert.bind(13, decision.default_choice).bind(14, decision.default_us);
      insert.bind(15, join_alternatives(decision.alternatives)).bind(16, decision.tuning_seconds);
      insert.step();
    });
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": saving a decision: " + failure.message);
  }
}

std::vector<DecisionRow> TuningDb::decisions(const std::string& device_filter) const {
  std::vector<DecisionRow> rows;
  if (read_only_) return rows;
  try {
    Statement select(db_,
                     "SELECT d.name, d.arch, d.sm_count, d.driver_version, d.nvrtc_version, "
                     "x.family, x.source_hash, x.K, x.N, x.group_size, x.act_order, x.m_bucket, "
                     "x.dtype, x.choice, x.config, x.median_us, x.default_choice, x.default_us, "
                     "x.alternatives, x.tuning_seconds FROM decisions x JOIN devices d ON "
                     "d.id = x.device_id WHERE instr(d.name, ?1) > 0 ORDER BY d.name, d.arch, "
                     "d.driver_version, d.nvrtc_version, x.family, x.K, x.N, x.group_size, "
                     "x.act_order, x.m_bucket, x.dtype, x.source_hash");
    select.bind(1, device_filter);
    while (select.step()) {
      DecisionRow row;
      row.key.device = {select.text(0), int(select.integer(1)), int(select.integer(2)),
                        int(select.integer(3)), select.text(4)};
      row.key.family = select.text(5);
      row.key.source_hash = select.text(6);
      row.key.K = select.integer(7);
      row.key.N = select.integer(8);
      row.key.group_size = select.integer(9);
      row.key.act_order = select.integer(10) != 0;
      row.key.m_bucket = int(select.integer(11));
      row.key.dtype = select.text(12);
      row.decision = {select.text(13), select.text(14), select.real(15),
                      select.text(16), select.real(17), split_alternatives(select.text(18)),
                      select.real(19)};
      rows.push_back(std::move(row));
    }
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading decisions: " + failure.message);
  }
  return rows;
}

void TuningDb::save_read_ceiling(const DeviceFingerprint& device, double bytes_per_second) {
  if (read_only_) return;
  try {
    write_transaction(db_, [&] {
      Statement update(db_, "UPDATE devices SET read_ceiling_bps = ?1 WHERE id = ?2");
      update.bind(1, bytes_per_second).bind(2, device_id(device, true));
      update.step();
    });
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": saving the read ceiling: " + failure.message);
  }
}

std::optional<double> TuningDb::read_ceiling(const DeviceFingerprint& device) const {
  if (read_only_) return std::nullopt;
  try {
    Statement select(db_, "SELECT read_ceiling_bps FROM devices WHERE id = ?1");
    select.bind(1, device_id(device, false));
    if (!select.step() || select.real(0) <= 0) return std::nullopt;
    return select.real(0);
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading the read ceiling: " + failure.message);
  }
}

std::vector<ResultRow> TuningDb::results(const std::string& device_filter) const {
  std::vector<ResultRow> rows;
  if (read_only_) return rows;
  try {
    Statement select(db_,
                     "SELECT d.name, d.arch, d.sm_count, d.driver_version, d.nvrtc_version, "
                     "r.family, r.source_hash, r.K, r.N, r.group_size, r.act_order, r.m_bucket, "
                     "r.dtype, r.config, r.default_config, r.median_us, r.min_us, r.p90_us, "
                     "r.default_us, r.repetitions, r.candidates_tried, r.candidates_failed, "
                     "r.tuning_seconds, r.kernel_key FROM results r JOIN devices d ON "
                     "d.id = r.device_id WHERE instr(d.name, ?1) > 0 ORDER BY d.name, d.arch, "
                     "d.driver_version, d.nvrtc_version, r.family, r.K, r.N, r.group_size, "
                     "r.act_order, r.m_bucket, r.dtype, r.source_hash");
    select.bind(1, device_filter);
    while (select.step()) {
      ResultRow row;
      row.key.device = {select.text(0), int(select.integer(1)), int(select.integer(2)),
                        int(select.integer(3)), select.text(4)};
      row.key.family = select.text(5);
      row.key.source_hash = select.text(6);
      row.key.K = select.integer(7);
      row.key.N = select.integer(8);
      row.key.group_size = select.integer(9);
      row.key.act_order = select.integer(10) != 0;
      row.key.m_bucket = int(select.integer(11));
      row.key.dtype = select.text(12);
      row.winner = {select.text(13),         select.text(14),         select.real(15),
                    select.real(16),         select.real(17),         select.real(18),
                    int(select.integer(19)), int(select.integer(20)), int(select.integer(21)),
                    select.real(22),         select.text(23)};
      rows.push_back(std::move(row));
    }
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading results: " + failure.message);
  }
  return rows;
}

std::vector<DeviceFingerprint> TuningDb::devices() const {
  std::vector<DeviceFingerprint> rows;
  if (read_only_) return rows;
  try {
    Statement select(db_,
                     "SELECT name, arch, sm_count, driver_version, nvrtc_version FROM devices "
                     "ORDER BY name, arch, driver_version, nvrtc_version");
    while (select.step()) {
      rows.push_back({select.text(0), int(select.integer(1)), int(select.integer(2)),
                      int(select.integer(3)), select.text(4)});
    }
  } catch (const SqliteFailure& failure) {
    throw Error(options_.path.string() + ": reading devices: " + failure.message);
  }
  return rows;
}

std::string TuningDb::integrity_check() const {
  try {
    Statement check(db_, "PRAGMA integrity_check");
    std::string found;
    while (check.step()) found += (found.empty() ? "" : "; ") + check.text(0);
    return found;
  } catch (const SqliteFailure& failure) {
    return failure.message;
  }
}

fs::path default_tuning_db_path(const std::string& override_path) {
  if (!override_path.empty()) return override_path;
  if (const char* path = std::getenv("Q4JIT_TUNING_DB"); path && *path) return path;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    return fs::path(xdg) / "q4jit" / "tuning.sqlite3";
  }
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : ".") / ".cache" / "q4jit" / "tuning.sqlite3";
}

}  // namespace q4jit
