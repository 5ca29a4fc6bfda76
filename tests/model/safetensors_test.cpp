// The safetensors layer: MappedFile, round trips through SafetensorsWriter and SafetensorsFile
// (every dtype family, odd sizes, metadata, aligned header), to_float / expect_* helpers, and
// TensorSet over sharded folders with and without an index, including the folder-level errors.
// Damaged single files are covered table-driven in bad_input_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "common/error.hpp"
#include "common/half.hpp"
#include "common/mapped_file.hpp"
#include "model/safetensors.hpp"
#include "tests/model/checkpoint_edit.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

std::vector<float> random_floats(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-3.0f, 3.0f);
  std::vector<float> values(count);
  for (float& value : values) value = distribution(generator);
  return values;
}

// Expects `body` to throw q4jit::Error whose message contains every one of `parts`.
template <typename Body>
void expect_error(Body body, std::initializer_list<std::string> parts) {
  try {
    body();
    ADD_FAILURE() << "no Error thrown";
  } catch (const Error& error) {
    for (const std::string& part : parts)
      EXPECT_NE(std::string(error.what()).find(part), std::string::npos)
          << "message: " << error.what() << "\nmissing: " << part;
  }
}

TEST(MappedFile, MapsContentAndEmptyFile) {
  TempDir dir;
  test::write_file(dir / "data", "hello");
  const MappedFile file(dir / "data");
  ASSERT_EQ(file.size(), 5u);
  EXPECT_EQ(std::memcmp(file.bytes().data(), "hello", 5), 0);

  test::write_file(dir / "empty", "");
  const MappedFile empty(dir / "empty");
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.bytes().empty());
}

TEST(MappedFile, MissingFileNamesPathAndReason) {
  TempDir dir;
  const fs::path missing = dir / "absent.safetensors";
  expect_error([&] { MappedFile file(missing); }, {missing.string(), "No such file"});
}

TEST(MappedFile, MoveTransfersOwnership) {
  TempDir dir;
  test::write_file(dir / "data", "abc");
  MappedFile first(dir / "data");
  MappedFile second(std::move(first));
  EXPECT_EQ(second.size(), 3u);
  EXPECT_EQ(first.size(), 0u);
  first = std::move(second);
  EXPECT_EQ(first.size(), 3u);
}

TEST(Safetensors, RoundTripKeepsEveryTensorAndMetadata) {
  TempDir dir;
  const std::vector<float> f16_values = random_floats(6 * 5, 1);
  const std::vector<float> f32_values = random_floats(7, 2);
  std::vector<int32_t> i32_values(24);
  std::mt19937 generator(3);
  for (int32_t& value : i32_values) value = int32_t(generator());
  const std::vector<std::byte> odd_bytes = {std::byte{1}, std::byte{2}, std::byte{3}};

  SafetensorsWriter writer;
  writer.add_f16("half", {6, 5}, f16_values);
  writer.add("odd", DType::U8, {3}, odd_bytes);  // leaves the following tensors unaligned
  writer.add_f32("single", {7}, f32_values);
  writer.add_i32("ints", {2, 3, 4}, i32_values);
  writer.add("scalar", DType::F32, {}, std::as_bytes(std::span<const float>(f32_values).first(1)));
  writer.add("empty", DType::F16, {0, 4}, {});
  writer.add_produced("made", DType::I32, {4}, [](std::span<std::byte> out) {
    const int32_t values[4] = {10, 20, 30, 40};
    std::memcpy(out.data(), values, sizeof values);
  });
  writer.set_metadata("format", "pt");
  EXPECT_EQ(writer.data_bytes(), 60u + 3u + 28u + 96u + 4u + 0u + 16u);
  writer.write(dir / "a.safetensors");

  const std::string raw = test::read_file(dir / "a.safetensors");
  uint64_t header_length = 0;
  std::memcpy(&header_length, raw.data(), 8);
  EXPECT_EQ((8 + header_length) % 8, 0u) << "data area must start 8-byte aligned";
  EXPECT_FALSE(fs::exists(dir / ("a.safetensors.tmp." + std::to_string(::getpid()))));

  const SafetensorsFile file(dir / "a.safetensors");
  EXPECT_EQ(file.metadata().at("format"), "pt");
  ASSERT_EQ(file.tensors().size(), 7u);
  const TensorView* half = file.find("half");
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->dtype, DType::F16);
  EXPECT_EQ(half->shape_string(), "[6, 5]");
  EXPECT_EQ(*half->file, dir / "a.safetensors");
  const std::vector<float> half_back = to_float(*half);
  for (size_t i = 0; i < f16_values.size(); ++i)
    EXPECT_EQ(half_back[i], half_to_float(float_to_half(f16_values[i]))) << i;
  EXPECT_EQ(to_float(*file.find("single")), f32_values);
  std::vector<int32_t> ints_back(i32_values.size());
  std::memcpy(ints_back.data(), file.find("ints")->bytes.data(), ints_back.size() * 4);
  EXPECT_EQ(ints_back, i32_values);
  EXPECT_EQ(file.find("odd")->bytes[2], std::byte{3});
  EXPECT_EQ(file.find("scalar")->numel(), 1);
  EXPECT_EQ(to_float(*file.find("scalar"))[0], f32_values[0]);
  EXPECT_EQ(file.find("empty")->numel(), 0);
  int32_t made[4];  // memcpy: "made" follows the 3-byte tensor, so it is not 4-byte aligned
  std::memcpy(made, file.find("made")->bytes.data(), sizeof made);
  EXPECT_EQ(made[3], 40);
  EXPECT_EQ(file.find("absent"), nullptr);
}

TEST(Safetensors, ToFloatConvertsBf16AndRejectsIntegers) {
  TempDir dir;
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x4049, 0x0000};  // 1, -2, 3.140625, 0
  SafetensorsWriter writer;
  writer.add("b", DType::BF16, {4}, std::as_bytes(std::span<const uint16_t>(bf16)));
  writer.add_i32("i", {1}, std::vector<int32_t>{5});
  writer.write(dir / "b.safetensors");
  const SafetensorsFile file(dir / "b.safetensors");
  EXPECT_EQ(to_float(*file.find("b")), (std::vector<float>{1.0f, -2.0f, 3.140625f, 0.0f}));
  expect_error([&] { to_float(*file.find("i")); }, {"b.safetensors", "'i'", "I32"});
}

TEST(Safetensors, ExpectShapeAndDtypeNameFileAndTensor) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.add_f32("w", {2, 3}, random_floats(6, 4));
  writer.write(dir / "c.safetensors");
  const SafetensorsFile file(dir / "c.safetensors");
  const TensorView& w = *file.find("w");
  EXPECT_NO_THROW(expect_shape(w, {2, 3}));
  EXPECT_NO_THROW(expect_dtype(w, DType::F32));
  expect_error(
      [&] {
        expect_shape(w, {3, 2});
      },
      {"c.safetensors", "'w'", "[2, 3]", "expected [3, 2]"});
  expect_error([&] { expect_dtype(w, DType::F16); }, {"c.safetensors", "'w'", "F32", "F16"});
}

TEST(Safetensors, WriterRejectsWrongByteCountAndDuplicates) {
  SafetensorsWriter writer;
  const std::vector<float> values = random_floats(4, 5);
  expect_error([&] { writer.add_f32("x", {5}, values); }, {"'x'", "16 bytes"});
  writer.add_f32("x", {4}, values);
  expect_error([&] { writer.add_f32("x", {4}, values); }, {"'x'", "twice"});
}

TEST(TensorSet, ShardedFolderWithIndexFindsEveryTensor) {
  TempDir dir;
  test::write_tiny_model(dir.path(), 32, false, true, 7, 3);
  ASSERT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  const TensorSet set = TensorSet::open_folder(dir.path());
  const nlohmann::json index =
      nlohmann::json::parse(test::read_file(dir / "model.safetensors.index.json"));
  EXPECT_EQ(set.names().size(), index["weight_map"].size());
  for (const auto& [name, shard] : index["weight_map"].items()) {
    ASSERT_TRUE(set.contains(name)) << name;
    EXPECT_EQ(set.get(name).file->filename(), shard.get<std::string>());
  }
  EXPECT_EQ(set.source(), dir.path());
}

TEST(TensorSet, ShardedFolderWithoutIndexOpensEveryShard) {
  TempDir dir;
  test::write_tiny_model(dir.path(), 0, false, true, 7, 2);
  const TensorSet with_index = TensorSet::open_folder(dir.path());
  fs::remove(dir / "model.safetensors.index.json");
  const TensorSet without_index = TensorSet::open_folder(dir.path());
  EXPECT_EQ(without_index.names(), with_index.names());
  EXPECT_TRUE(without_index.contains("lm_head.weight"));
  expect_error([&] { without_index.get("nope.weight"); },
               {dir.path().string(), "'nope.weight'", "missing"});
}

TEST(TensorSet, TensorInTwoShardsIsAnError) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.add_f32("shared.weight", {2}, random_floats(2, 6));
  writer.write(dir / "a.safetensors");
  writer.write(dir / "b.safetensors");
  expect_error([&] { TensorSet::open_folder(dir.path()); },
               {"b.safetensors", "'shared.weight'", "also in", "a.safetensors"});
}

TEST(TensorSet, IndexNamingMissingShardIsAnError) {
  TempDir dir;
  test::write_tiny_model(dir.path(), 32, false, true, 8, 2);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  expect_error(
      [&] { TensorSet::open_folder(dir.path()); },
      {"model.safetensors.index.json", "model-00002-of-00002.safetensors", "does not exist"});
}

TEST(TensorSet, IndexEntryNotInItsShardIsAnError) {
  TempDir dir;
  test::write_tiny_model(dir.path(), 32, false, true, 9, 2);
  test::edit_json(dir / "model.safetensors.index.json", [](nlohmann::json& index) {
    index["weight_map"]["model.layers.9.mlp.up_proj.qweight"] = "model-00001-of-00002.safetensors";
  });
  expect_error([&] { TensorSet::open_folder(dir.path()); },
               {"model-00001-of-00002.safetensors", "'model.layers.9.mlp.up_proj.qweight'",
                "not in this shard"});
}

TEST(TensorSet, IndexShardNameOutsideFolderIsAnError) {
  TempDir dir;
  test::write_tiny_model(dir.path(), 32, false, true, 9, 2);
  test::edit_json(dir / "model.safetensors.index.json", [](nlohmann::json& index) {
    index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  });
  expect_error([&] { TensorSet::open_folder(dir.path()); },
               {"model.safetensors.index.json", "not a file in the folder"});
}

TEST(TensorSet, FolderWithoutShardsIsAnError) {
  TempDir dir;
  expect_error([&] { TensorSet::open_folder(dir.path()); },
               {dir.path().string(), "no *.safetensors"});
}

}  // namespace
}  // namespace q4jit
