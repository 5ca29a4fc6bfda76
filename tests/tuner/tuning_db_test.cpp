// The tuning database: creation, migrations from schemas 1 and 2, winners, trials and decisions
// round trips, keys that must not collide, a newer-schema file, a corrupt file, two processes
// writing at once.
#include "cache/tuning_db.hpp"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

TuningKey sample_key(int m_bucket = 1) {
  TuningKey key;
  key.device = {"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};
  key.family = "q4_matmul";
  key.source_hash = "ab12";
  key.K = 4096;
  key.N = 12288;
  key.group_size = 128;
  key.act_order = true;
  key.m_bucket = m_bucket;
  return key;
}

TrialRecord make_trial(const std::string& config, TrialStatus status, double median_us = 0) {
  TrialRecord trial;
  trial.config = config;
  trial.status = status;
  trial.median_us = trial.min_us = trial.p90_us = median_us;
  trial.repetitions = median_us > 0 ? 1 : 0;
  trial.rung = median_us > 0 ? 1 : 0;
  return trial;
}

WinnerRecord sample_winner() {
  return {"bt128.cpt4.lw128.ks512.mb1.xs.f32.at",
          "bt256.cpt4.lw128.ks256.mb1.xs.f32.at",
          12.5,
          12.1,
          13.0,
          14.2,
          18,
          96,
          3,
          2.75,
          "0123abcd"};
}

// Runs SQL on a file with the plain SQLite API (to build old or odd files by hand).
void run_sql(const fs::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* message = nullptr;
  const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  const std::string text = message ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  ASSERT_EQ(code, SQLITE_OK) << text;
}

std::string schema_of(const fs::path& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string schema;
  sqlite3_exec(
      db, "SELECT sql FROM sqlite_master ORDER BY name",
      [](void* out, int, char** values, char**) {
        *static_cast<std::string*>(out) += std::string(values[0] ? values[0] : "") + "\n";
        return 0;
      },
      &schema, nullptr);
  sqlite3_close(db);
  return schema;
}

struct Collected {
  std::vector<std::string> lines;
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) { lines.push_back(line); };
  }
};

TEST(TuningDb, CreatesSchemaAndRoundTripsWinnersAndTrials) {
  test::TempDir dir;
  TuningDb db({dir / "sub" / "tuning.sqlite3", {}});
  EXPECT_EQ(db.file_schema_version(), kTuningSchemaVersion);
  EXPECT_FALSE(db.read_only());
  EXPECT_EQ(db.integrity_check(), "ok");
  EXPECT_FALSE(db.find_winner(sample_key()).has_value());

  db.save_winner(sample_key(), sample_winner());
  const auto found = db.find_winner(sample_key());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->config, sample_winner().config);
  EXPECT_EQ(found->default_config, sample_winner().default_config);
  EXPECT_DOUBLE_EQ(found->p90_us, 13.0);
  EXPECT_EQ(found->candidates_failed, 3);
  EXPECT_EQ(found->kernel_key, "0123abcd");

  TrialRecord wrong = make_trial("bt64.cpt2.lw32.ks1024.mb1.xg.h2.at", TrialStatus::wrong_result);
  wrong.relative_error = 0.5;
  wrong.detail = "relative error 5.0e-01 above 4.0e-03";
  db.save_trial(sample_key(), wrong);
  TrialRecord timed = make_trial("bt128.cpt4.lw128.ks512.mb1.xs.f32.at", TrialStatus::ok, 12.5);
  db.save_trial(sample_key(), timed);
  timed.median_us = 12.4;  // a second save replaces the first
  db.save_trial(sample_key(), timed);
  const std::vector<TrialRecord> trials = db.trials(sample_key());
  ASSERT_EQ(trials.size(), 2u);
  EXPECT_EQ(trials[0].config, timed.config);  // sorted by config
  EXPECT_DOUBLE_EQ(trials[0].median_us, 12.4);
  EXPECT_EQ(trials[1].status, TrialStatus::wrong_result);
  EXPECT_EQ(trials[1].detail, wrong.detail);
  EXPECT_EQ(db.results().size(), 1u);
  EXPECT_EQ(db.forget(sample_key()), 3);
  EXPECT_FALSE(db.find_winner(sample_key()).has_value());
}

TEST(TuningDb, EveryKeyFieldSeparatesWinners) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  db.save_winner(sample_key(), sample_winner());
  std::vector<TuningKey> others(10, sample_key());
  others[0].device.name = "NVIDIA H200";
  others[1].device.arch = 89;
  others[2].device.sm_count = 114;
  others[3].device.driver_version = 13010;  // a new driver retunes; the old row stays
  others[4].device.nvrtc_version = "13-1";
  others[5].source_hash = "cd34";  // a changed kernel source retunes that family
  others[6].K = 11008;
  others[7].group_size = 64;
  others[8].act_order = false;
  others[9].m_bucket = 2;
  for (const TuningKey& other : others) {
    EXPECT_FALSE(db.find_winner(other).has_value()) << other.shape_label();
  }
  EXPECT_TRUE(db.find_winner(sample_key()).has_value());
}

TEST(TuningDb, ReadCeilingIsPerDevice) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  EXPECT_FALSE(db.read_ceiling(sample_key().device).has_value());
  db.save_read_ceiling(sample_key().device, 3.08e12);
  EXPECT_DOUBLE_EQ(db.read_ceiling(sample_key().device).value(), 3.08e12);
  EXPECT_EQ(db.devices().size(), 1u);
}

// The version-1 schema exactly as that version wrote it.
constexpr const char* kSchemaV1 =
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
    ") STRICT;"
    "PRAGMA user_version = 1;";

TEST(TuningDb, MigratesVersionOneKeepingItsWinners) {
  test::TempDir dir;
  const fs::path old_file = dir / "old.sqlite3";
  run_sql(old_file, std::string(kSchemaV1) +
                        "INSERT INTO devices VALUES (1, 'NVIDIA H100 80GB HBM3', 90, 132, 13000,"
                        " '13-0');"
                        "INSERT INTO results VALUES (1, 'q4_matmul', 'ab12', 4096, 12288, 128, 1,"
                        " 1, 'f16', 'bt64.cpt2.lw32.ks1024.mb1.xs.f32.at', 9.5, 9.25, 12, 40,"
                        " 1.5);");
  {
    TuningDb db({old_file, {}});
    EXPECT_EQ(db.file_schema_version(), kTuningSchemaVersion);
    const auto winner = db.find_winner(sample_key());
    ASSERT_TRUE(winner.has_value());
    EXPECT_EQ(winner->config, "bt64.cpt2.lw32.ks1024.mb1.xs.f32.at");
    EXPECT_DOUBLE_EQ(winner->median_us, 9.5);
    EXPECT_EQ(winner->candidates_tried, 40);
    EXPECT_EQ(winner->kernel_key, "");  // unknown in version 1
    db.save_trial(sample_key(),
                  make_trial("x", TrialStatus::compile_failed));  // the new table works
    EXPECT_EQ(db.trials(sample_key()).size(), 1u);
  }
  const fs::path fresh_file = dir / "fresh.sqlite3";
  { TuningDb fresh({fresh_file, {}}); }
  EXPECT_EQ(schema_of(old_file), schema_of(fresh_file));  // migrated == created
}

// The version-2 schema exactly as that version wrote it (version 1 plus its 1 -> 2 step).
constexpr const char* kSchemaV2Additions =
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
    " act_order, m_bucket, dtype, config)) STRICT;"
    "PRAGMA user_version = 2;";

TuningKey decision_key(int m_bucket = 16) {
  TuningKey key = sample_key(m_bucket);
  key.family = "matmul_path";
  key.source_hash = "9f00";
  return key;
}

DecisionRecord sample_decision() {
  DecisionRecord decision;
  decision.choice = "mma";
  decision.config = "tm16.tn128.tk64.wn4.wk1.st3.sk2";
  decision.median_us = 26.625;
  decision.default_choice = "mma";
  decision.default_us = 26.625;
  decision.alternatives = {{"gemv", 85.125}, {"mma", 26.625}, {"dequant_gemm", 170.5}};
  decision.tuning_seconds = 3.5;
  return decision;
}

TEST(TuningDb, MigratesVersionTwoKeepingWinnersAndTrials) {
  test::TempDir dir;
  const fs::path old_file = dir / "v2.sqlite3";
  run_sql(old_file, std::string(kSchemaV1) + kSchemaV2Additions +
                        "INSERT INTO devices VALUES (1, 'NVIDIA H100 80GB HBM3', 90, 132, 13000,"
                        " '13-0', 3.1e12);"
                        "INSERT INTO results(device_id, family, source_hash, K, N, group_size,"
                        " act_order, m_bucket, dtype, config, median_us, min_us, repetitions,"
                        " candidates_tried, tuning_seconds, kernel_key) VALUES (1, 'q4_matmul',"
                        " 'ab12', 4096, 12288, 128, 1, 1, 'f16', 'bt64.cpt2.lw32.ks1024.mb1.xs."
                        "f32.at', 9.5, 9.25, 12, 40, 1.5, 'k2');"
                        "INSERT INTO trials VALUES (1, 'q4_matmul', 'ab12', 4096, 12288, 128, 1,"
                        " 1, 'f16', 'c', 'wrong_result', 0, 0, 0, 0, 0, 0.5, 'bad');");
  {
    TuningDb db({old_file, {}});
    EXPECT_EQ(db.file_schema_version(), kTuningSchemaVersion);
    const auto winner = db.find_winner(sample_key());
    ASSERT_TRUE(winner.has_value());
    EXPECT_EQ(winner->kernel_key, "k2");
    ASSERT_EQ(db.trials(sample_key()).size(), 1u);
    EXPECT_EQ(db.trials(sample_key())[0].status, TrialStatus::wrong_result);
    EXPECT_DOUBLE_EQ(db.read_ceiling(sample_key().device).value(), 3.1e12);
    EXPECT_FALSE(db.find_decision(decision_key()).has_value());
    db.save_decision(decision_key(), sample_decision());  // the new table works
    EXPECT_TRUE(db.find_decision(decision_key()).has_value());
  }
  const fs::path fresh_file = dir / "fresh.sqlite3";
  { TuningDb fresh({fresh_file, {}}); }
  EXPECT_EQ(schema_of(old_file), schema_of(fresh_file));  // migrated == created
}

TEST(TuningDb, DecisionsRoundTripAndAreKeyedLikeWinners) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  db.save_decision(decision_key(), sample_decision());
  const auto found = db.find_decision(decision_key());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->choice, "mma");
  EXPECT_EQ(found->config, sample_decision().config);
  EXPECT_DOUBLE_EQ(found->median_us, 26.625);
  EXPECT_EQ(found->default_choice, "mma");
  EXPECT_EQ(found->alternatives, sample_decision().alternatives);
  EXPECT_DOUBLE_EQ(found->tuning_seconds, 3.5);
  // Another bucket, source hash or device misses; a winner of the same key is another table.
  TuningKey other = decision_key(32);
  EXPECT_FALSE(db.find_decision(other).has_value());
  other = decision_key();
  other.source_hash = "9f01";
  EXPECT_FALSE(db.find_decision(other).has_value());
  other = decision_key();
  other.device.driver_version = 13010;
  EXPECT_FALSE(db.find_decision(other).has_value());
  EXPECT_FALSE(db.find_winner(decision_key()).has_value());
  // A second save replaces the first; decisions() lists it; forget removes it.
  DecisionRecord gemv = sample_decision();
  gemv.choice = "gemv";
  db.save_decision(decision_key(), gemv);
  db.save_decision(decision_key(64), sample_decision());
  const std::vector<DecisionRow> rows = db.decisions();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].key.m_bucket, 16);
  EXPECT_EQ(rows[0].decision.choice, "gemv");
  EXPECT_EQ(rows[1].key, decision_key(64));
  EXPECT_TRUE(db.decisions("A100").empty());
  EXPECT_EQ(db.forget(decision_key()), 1);
  EXPECT_FALSE(db.find_decision(decision_key()).has_value());
}

TEST(TuningDb, MalformedAlternativesAreSkippedNotFatal) {
  test::TempDir dir;
  const fs::path path = dir / "tuning.sqlite3";
  { TuningDb({path, {}}).save_decision(decision_key(), sample_decision()); }
  run_sql(path, "UPDATE decisions SET alternatives = 'gemv=12.5;=3;mma;dequant_gemm=x1;a=2e1'");
  TuningDb db({path, {}});
  const auto found = db.find_decision(decision_key());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->alternatives,
            (std::vector<std::pair<std::string, double>>{{"gemv", 12.5}, {"a", 20.0}}));
}

TEST(TuningDb, NewerSchemaOpensReadOnlyWithOneNotice) {
  test::TempDir dir;
  const fs::path path = dir / "tuning.sqlite3";
  { TuningDb({path, {}}).save_winner(sample_key(), sample_winner()); }
  run_sql(path, "PRAGMA user_version = " + std::to_string(kTuningSchemaVersion + 5));
  Collected notices;
  TuningDb db({path, notices.sink()});
  EXPECT_TRUE(db.read_only());
  ASSERT_EQ(notices.lines.size(), 1u);
  EXPECT_NE(notices.lines[0].find("newer"), std::string::npos) << notices.lines[0];
  EXPECT_NE(notices.lines[0].find("read-only"), std::string::npos) << notices.lines[0];
  EXPECT_FALSE(db.find_winner(sample_key()).has_value());  // defaults used
  EXPECT_FALSE(db.find_decision(decision_key()).has_value());
  EXPECT_TRUE(db.decisions().empty());
  db.save_winner(sample_key(), sample_winner());  // ignored, the file is untouched
  db.save_decision(decision_key(), sample_decision());
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &statement, nullptr);
  ASSERT_EQ(sqlite3_step(statement), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(statement, 0), kTuningSchemaVersion + 5);
  sqlite3_finalize(statement);
  sqlite3_close(raw);
}

TEST(TuningDb, CorruptFileIsMovedAsideAndAFreshOneCreated) {
  test::TempDir dir;
  const fs::path path = dir / "tuning.sqlite3";
  std::mt19937 rng(11);
  std::string garbage(8192, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << garbage;
  Collected notices;
  TuningDb db({path, notices.sink()});
  ASSERT_EQ(notices.lines.size(), 1u);
  EXPECT_NE(notices.lines[0].find(".corrupt-"), std::string::npos) << notices.lines[0];
  EXPECT_EQ(db.integrity_check(), "ok");
  db.save_winner(sample_key(), sample_winner());
  EXPECT_TRUE(db.find_winner(sample_key()).has_value());
  int kept = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    if (entry.path().filename().string().starts_with("tuning.sqlite3.corrupt-")) {
      ++kept;
      EXPECT_EQ(fs::file_size(entry.path()), garbage.size());  // kept as it was
    }
  }
  EXPECT_EQ(kept, 1);
}

TEST(TuningDb, DamagedPagesOfARealDatabaseAreDetected) {
  test::TempDir dir;
  const fs::path path = dir / "tuning.sqlite3";
  {
    TuningDb db({path, {}});
    for (int m = 1; m <= 64; m *= 2) db.save_winner(sample_key(m), sample_winner());
  }
  run_sql(path, "PRAGMA wal_checkpoint(TRUNCATE)");
  // Overwrite everything past the header page with garbage: the schema page stays readable.
  const auto size = fs::file_size(path);
  ASSERT_GT(size, 4096u);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(4096);
    std::mt19937 rng(5);
    for (auto i = 4096u; i < size; ++i) file.put(static_cast<char>(rng()));
  }
  Collected notices;
  TuningDb db({path, notices.sink()});
  ASSERT_EQ(notices.lines.size(), 1u);
  EXPECT_NE(notices.lines[0].find("corrupt-"), std::string::npos);
  EXPECT_FALSE(db.find_winner(sample_key()).has_value());
}

// Each child opens the same new file and writes winners and trials, some keys shared with the
// other child, each write its own transaction.
int write_from_child(const fs::path& path, int child) {
  try {
    TuningDb db({path, {}});
    for (int i = 0; i < 60; ++i) {
      TuningKey key = sample_key(1 << (i % 7));
      key.K = 1024 + 8 * (i / 7);
      // Appended piece by piece: GCC 12's -Wrestrict misfires on "c" + to_string(...) at -O3.
      std::string config = "c";
      config += std::to_string(child);
      config += '.';
      config += std::to_string(i);
      const TrialRecord trial = make_trial(config, TrialStatus::ok, i + 1);
      db.save_trial(key, trial);
      WinnerRecord winner = sample_winner();
      winner.config = trial.config;
      db.save_winner(key, winner);  // the same key from both children: last one wins
    }
    return db.integrity_check() == "ok" ? 0 : 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "child %d: %s\n", child, error.what());
    return 1;
  }
}

TEST(TuningDb, TwoProcessesWritingAtOnceBothFinish) {
  test::TempDir dir;
  const fs::path path = dir / "tuning.sqlite3";
  std::vector<pid_t> children;
  for (int child = 0; child < 2; ++child) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(write_from_child(path, child));
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  TuningDb db({path, {}});
  EXPECT_EQ(db.integrity_check(), "ok");
  EXPECT_EQ(db.results().size(), 60u);  // 60 distinct keys, written by both
  size_t trials = 0;
  for (const ResultRow& row : db.results()) {
    trials += db.trials(row.key).size();
    const std::string& winner = row.winner.config;
    EXPECT_TRUE(winner.starts_with("c0.") || winner.starts_with("c1.")) << winner;
  }
  EXPECT_EQ(trials, 120u);  // every trial of both children
}

TEST(TuningDb, DefaultPathFollowsTheEnvironment) {
  EXPECT_EQ(default_tuning_db_path("/x/y.sqlite3"), fs::path("/x/y.sqlite3"));
  setenv("Q4JIT_TUNING_DB", "/tmp/q4jit-test.sqlite3", 1);
  EXPECT_EQ(default_tuning_db_path(), fs::path("/tmp/q4jit-test.sqlite3"));
  unsetenv("Q4JIT_TUNING_DB");
  setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  EXPECT_EQ(default_tuning_db_path(), fs::path("/tmp/xdg/q4jit/tuning.sqlite3"));
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(default_tuning_db_path().filename(), "tuning.sqlite3");
}

}  // namespace
}  // namespace q4jit
