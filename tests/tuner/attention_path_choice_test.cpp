// Attention decisions through a real tuning database: saved under their keys, read back by
// load_attention_choice for GpuOps (prefill path and configuration per T bucket, decode split per
// length bucket); rows of another device, geometry or source hash, rows naming a configuration
// that does not exist or is not legal here, and a missing database give the rule (no entry).
// No GPU.
#include "tuner/attention_path_choice.hpp"

#include <gtest/gtest.h>

#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

const DeviceFingerprint kH100{"NVIDIA H100 80GB HBM3", 90, 132, 13000, "13-0"};
const AttentionGeometry k7b{32, 32, 128, 4096};

DeviceInfo device_of(int sm) {
  DeviceInfo device;
  device.name = "NVIDIA H100 80GB HBM3";
  device.cc_major = sm / 10;
  device.cc_minor = sm % 10;
  device.sm_count = 132;
  device.max_threads_per_block = 1024;
  device.smem_per_block = 48 * 1024;
  device.smem_per_block_optin = 227 * 1024;
  return device;
}

DecisionRecord decision(const std::string& choice, const std::string& config, double us,
                        const std::string& default_choice, double default_us) {
  return {choice, config, us, default_choice, default_us, {{choice, us}}, 0.5};
}

void save_prefill(TuningDb& db, const AttentionGeometry& geometry, int bucket,
                  const DecisionRecord& record, const std::string& hash,
                  const DeviceFingerprint& device = kH100) {
  db.save_decision(attention_key(device, kAttentionPathFamily, hash, geometry, bucket), record);
}

void save_split(TuningDb& db, const AttentionGeometry& geometry, int bucket,
                const DecisionRecord& record, const std::string& hash) {
  db.save_decision(attention_key(kH100, kAttentionSplitFamily, hash, geometry, bucket), record);
}

TEST(AttentionPathChoice, ReadsWhatWasStored) {
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  const std::string path_hash = attention_path_source_hash();
  const std::string split_hash = attention_split_source_hash();
  save_prefill(db, k7b, 8, decision("simt", "d128.bq16.bk64.w2", 11.0, "mma", 30.0), path_hash);
  save_prefill(db, k7b, 512, decision("mma", "d128.bq128.bk64.st2", 380.0, "mma", 410.0),
               path_hash);
  save_split(db, k7b, 4096, decision("sp128", "d128.sp128.t256.hb1", 31.3, "sp256", 34.4),
             split_hash);
  // Not for this build, device or geometry, or naming nothing GpuOps has:
  save_prefill(db, k7b, 16, decision("simt", "d128.bq16.bk64.w2", 11.0, "mma", 30.0), "old");
  save_prefill(db, k7b, 32, decision("simt", "d128.bq16.bk64.w2", 11.0, "mma", 30.0), path_hash,
               {"NVIDIA H200", 90, 132, 13000, "13-0"});
  save_prefill(db, {32, 8, 128, 4096}, 64, decision("simt", "d128.bq16.bk64.w2", 1, "mma", 2),
               path_hash);
  save_prefill(db, k7b, 128, decision("mma", "d128.bq96.bk64.st2", 1, "mma", 2), path_hash);
  save_prefill(db, k7b, 256, decision("simt", "d64.bq16.bk64.w2", 1, "mma", 2), path_hash);
  save_split(db, k7b, 2048, decision("sp1024", "d128.sp1024.t256.hb1", 1, "sp256", 2), split_hash);
  save_split(db, k7b, 1024, decision("256", "d128.sp256.t256.hb1", 1, "sp256", 2), split_hash);

  const DeviceInfo device = device_of(90);
  const AttentionChoice choice = load_attention_choice(&db, kH100, device, k7b);
  ASSERT_EQ(choice.prefill.size(), 2u);
  EXPECT_EQ(choice.prefill.at(8).path, AttentionPrefillPath::simt);
  EXPECT_EQ(choice.prefill.at(8).config(), "d128.bq16.bk64.w2");
  EXPECT_EQ(choice.prefill.at(512).path, AttentionPrefillPath::mma);
  EXPECT_EQ(choice.prefill.at(512).mma.block_q, 128);
  ASSERT_EQ(choice.decode_split.size(), 1u);
  EXPECT_EQ(choice.decode_split.at(4096), 128);

  // An sm_75 device cannot run the mma decision: only the SIMT one stands.
  const AttentionChoice turing = load_attention_choice(&db, kH100, device_of(75), k7b);
  EXPECT_EQ(turing.prefill.size(), 1u);
  EXPECT_TRUE(turing.prefill.count(8));
  // A shorter cache reads the buckets it can run only.
  const AttentionChoice shorter = load_attention_choice(&db, kH100, device, {32, 32, 128, 256});
  EXPECT_EQ(shorter.prefill.size(), 1u);
  EXPECT_TRUE(shorter.decode_split.empty());
}

TEST(AttentionPathChoice, NothingStoredIsTheRule) {
  EXPECT_TRUE(load_attention_choice(nullptr, kH100, device_of(90), k7b).empty());
  test::TempDir dir;
  TuningDb db({dir / "tuning.sqlite3", {}});
  EXPECT_TRUE(load_attention_choice(&db, kH100, device_of(90), k7b).empty());
  save_prefill(db, k7b, 8, decision("simt", "d128.bq16.bk64.w2", 11.0, "mma", 30.0),
               attention_path_source_hash());
  EXPECT_TRUE(load_attention_choice(&db, kH100, device_of(90), {0, 0, 0, 4096}).empty());
}

TEST(AttentionPathChoice, DecisionsRoundTripThroughTheDatabase) {
  test::TempDir dir;
  const DecisionRecord stored = {
      "mma", "d64.bq64.bk32.st2", 12.25, "mma", 13.5, {{"mma", 12.25}, {"simt", 19.75}}, 1.5};
  const TuningKey key = attention_key(kH100, kAttentionPathFamily, "h", {8, 4, 64, 2048}, 64);
  {
    TuningDb db({dir / "tuning.sqlite3", {}});
    db.save_decision(key, stored);
  }
  const TuningDb reopened({dir / "tuning.sqlite3", {}});
  const std::optional<DecisionRecord> found = reopened.find_decision(key);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->choice, "mma");
  EXPECT_EQ(found->config, "d64.bq64.bk32.st2");
  EXPECT_DOUBLE_EQ(found->median_us, 12.25);
  EXPECT_EQ(found->default_choice, "mma");
  EXPECT_DOUBLE_EQ(found->default_us, 13.5);
  EXPECT_EQ(found->alternatives, stored.alternatives);
  EXPECT_DOUBLE_EQ(found->tuning_seconds, 1.5);
  const std::vector<DecisionRow> rows = reopened.decisions();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].key, key);
}

}  // namespace
}  // namespace q4jit
