// Damaged checkpoints, table-driven: each case writes a valid tiny model, damages one file
// (safetensors bytes or header, a tensor, config.json), loads it, and expects a q4jit::Error whose
// one-line message names the file or tensor and the problem. A seeded byte-flipping sweep then
// checks that no damage crashes the loader. Tokenizer and CLI inputs are tested elsewhere.
#include <gtest/gtest.h>

#include <functional>
#include <ostream>
#include <random>

#include "common/error.hpp"
#include "model/weights.hpp"
#include "tests/model/checkpoint_edit.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::RawTensor;

// The tiny model's layer-0 q_proj: K = N = 64, group 32, so G = 2.
const std::string kQ = "model.layers.0.self_attn.q_proj";

struct BadCase {
  const char* name;
  int group_size;  // of the valid model written first (0: fp16)
  bool act_order;
  std::function<void(const fs::path& dir)> damage;
  std::vector<std::string> expected;  // substrings of the Error message
};
void PrintTo(const BadCase& c, std::ostream* out) {
  *out << c.name;
}

fs::path shard(const fs::path& dir) {
  return dir / "model.safetensors";
}

void set_header_length(const fs::path& file, uint64_t length) {
  std::string bytes = test::read_file(file);
  std::memcpy(bytes.data(), &length, 8);
  test::write_file(file, bytes);
}

// Damage helpers returning a BadCase::damage.
auto header(std::function<void(json&)> edit) {
  return [=](const fs::path& dir) { test::edit_header(shard(dir), edit); };
}
auto tensors(std::function<void(std::vector<RawTensor>&)> edit) {
  return [=](const fs::path& dir) { test::edit_tensors(shard(dir), edit); };
}
auto config(std::function<void(json&)> edit) {
  return [=](const fs::path& dir) { test::edit_json(dir / "config.json", edit); };
}
// Replaces a tensor with one of another shape, filled with valid-looking random int32 or fp16.
auto reshape(std::string name, std::vector<int64_t> shape) {
  return tensors([=](std::vector<RawTensor>& all) {
    RawTensor& tensor = test::tensor_named(all, name);
    size_t count = 1;
    for (int64_t dim : shape) count *= size_t(dim);
    std::mt19937 generator(99);
    tensor.shape = shape;
    tensor.bytes.resize(count * dtype_size(tensor.dtype));
    for (std::byte& b : tensor.bytes) b = std::byte(generator() & 0x3f);  // no fp16 inf/nan
  });
}
auto set_g_idx(std::function<void(std::vector<int32_t>&)> edit) {
  return tensors([=](std::vector<RawTensor>& all) {
    RawTensor& tensor = test::tensor_named(all, kQ + ".g_idx");
    std::vector<int32_t> values = tensor.values<int32_t>();
    edit(values);
    tensor.set_values(values);
  });
}

const std::vector<BadCase>& cases() {
  static const std::vector<BadCase> all = {
      // The safetensors container.
      {"truncated_file",
       32,
       false,
       [](const fs::path& dir) { fs::resize_file(shard(dir), fs::file_size(shard(dir)) / 2); },
       {"model.safetensors", "outside the data area", "truncated?"}},
      {"truncated_to_five_bytes",
       32,
       false,
       [](const fs::path& dir) { fs::resize_file(shard(dir), 5); },
       {"model.safetensors", "truncated"}},
      {"empty_file",
       32,
       false,
       [](const fs::path& dir) { fs::resize_file(shard(dir), 0); },
       {"model.safetensors", "truncated"}},
      {"header_length_past_end",
       32,
       false,
       [](const fs::path& dir) { set_header_length(shard(dir), fs::file_size(shard(dir))); },
       {"model.safetensors", "header length", "past the end"}},
      {"header_length_huge",
       32,
       false,
       [](const fs::path& dir) { set_header_length(shard(dir), uint64_t(1) << 63); },
       {"model.safetensors", "past the end"}},
      {"non_json_header",
       32,
       false,
       [](const fs::path& dir) { test::replace_header(shard(dir), "not json at all"); },
       {"model.safetensors", "header is not valid JSON"}},
      {"header_not_object",
       32,
       false,
       [](const fs::path& dir) { test::replace_header(shard(dir), "[1, 2, 3]"); },
       {"model.safetensors", "header is not a JSON object"}},
      {"unknown_dtype",
       32,
       false,
       header([](json& h) { h["model.norm.weight"]["dtype"] = "Q7"; }),
       {"model.safetensors", "'model.norm.weight'", "unknown dtype 'Q7'"}},
      {"shape_offset_mismatch",
       32,
       false,
       header([](json& h) { h["model.norm.weight"]["shape"] = {65}; }),
       {"model.safetensors", "'model.norm.weight'", "[65] x F16 does not match its 128 bytes"}},
      {"overlapping_tensors",
       32,
       false,
       header([](json& h) {
         h["model.norm.weight"]["data_offsets"] = {64, 192};
       }),
       {"model.safetensors", "'model.norm.weight'", "overlap"}},
      {"offsets_begin_after_end",
       32,
       false,
       header([](json& h) {
         h["model.norm.weight"]["data_offsets"] = {256, 128};
       }),
       {"model.safetensors", "'model.norm.weight'", "begin > end"}},
      {"offsets_not_numbers",
       32,
       false,
       header([](json& h) {
         h["model.norm.weight"]["data_offsets"] = {"0", -1};
       }),
       {"model.safetensors", "'model.norm.weight'", "data_offsets"}},
      {"negative_dimension",
       32,
       false,
       header([](json& h) { h["model.norm.weight"]["shape"] = {-64}; }),
       {"model.safetensors", "'model.norm.weight'", "negative dimension"}},
      {"missing_dtype_field",
       32,
       false,
       header([](json& h) { h["model.norm.weight"].erase("dtype"); }),
       {"model.safetensors", "'model.norm.weight'", "has no 'dtype'"}},
      {"metadata_not_strings",
       32,
       false,
       header([](json& h) { h["__metadata__"]["format"] = 1; }),
       {"model.safetensors", "__metadata__ 'format' is not a string"}},
      // Tensors against each other and the config.
      {"missing_tensor",
       32,
       false,
       header([](json& h) { h.erase("model.layers.1.mlp.up_proj.scales"); }),
       {"tensor 'model.layers.1.mlp.up_proj.scales' is missing"}},
      {"missing_lm_head_untied",
       0,
       false,
       header([](json& h) { h.erase("lm_head.weight"); }),
       {"'lm_head.weight' is missing", "tie_word_embeddings is false"}},
      {"embedding_disagrees_with_vocab",
       32,
       false,
       config([](json& c) { c["vocab_size"] = 4000; }),
       {"model.safetensors", "'model.embed_tokens.weight'", "expected [4000, 64]"}},
      {"dense_projection_wrong_shape",
       0,
       false,
       reshape(kQ + ".weight", {64, 56}),
       {"model.safetensors", kQ + ".weight'", "has shape [64, 56], expected [64, 64]"}},
      {"qweight_shape_disagrees",
       32,
       false,
       reshape(kQ + ".qweight", {8, 72}),
       {"model.safetensors", kQ + ".qweight'", "has shape [8, 72], expected [8, 64]"}},
      {"qzeros_shape_disagrees",
       32,
       false,
       reshape(kQ + ".qzeros", {2, 9}),
       {"model.safetensors", kQ + ".qzeros'", "expected [2, 8]"}},
      {"scales_shape_disagrees",
       32,
       false,
       reshape(kQ + ".scales", {2, 56}),
       {"model.safetensors", kQ + ".scales'", "expected [2, 64]"}},
      {"groups_do_not_divide_k",
       32,
       false,
       reshape(kQ + ".qzeros", {3, 8}),
       {"model.safetensors", kQ + ".qzeros'", "3 groups do not divide K = 64"}},
      {"qweight_wrong_dtype",
       32,
       false,
       header([](json& h) { h[kQ + ".qweight"]["dtype"] = "F32"; }),
       {"model.safetensors", kQ + ".qweight'", "dtype F32, expected I32"}},
      {"g_idx_out_of_range",
       32,
       false,
       set_g_idx([](std::vector<int32_t>& g) { g[5] = 2; }),
       {"model.safetensors", kQ + ".g_idx'", "value 2 at row 5 is out of range [0, 2)"}},
      {"g_idx_negative",
       32,
       true,
       set_g_idx([](std::vector<int32_t>& g) { g[0] = -1; }),
       {"model.safetensors", kQ + ".g_idx'", "out of range"}},
      {"act_order_groups_unequal",
       32,
       true,
       set_g_idx([](std::vector<int32_t>& g) {
         g[int(std::find(g.begin(), g.end(), 0) - g.begin())] = 1;
       }),
       {"model.safetensors", kQ + ".g_idx'", "groups of unequal size"}},
      {"eight_bit_packing",
       32,
       false,
       reshape(kQ + ".qweight", {16, 64}),
       {"model.safetensors", kQ + ".qweight'", "8-bit packing is not supported"}},
      // config.json.
      {"config_missing_required_field",
       32,
       false,
       config([](json& c) { c.erase("vocab_size"); }),
       {"config.json", "vocab_size is missing"}},
      {"config_wrong_type",
       32,
       false,
       config([](json& c) { c["hidden_size"] = "64"; }),
       {"config.json", "hidden_size must be an integer"}},
      {"config_not_json",
       32,
       false,
       [](const fs::path& dir) { test::write_file(dir / "config.json", "{\"hidden_size\": 64,"); },
       {"config.json", "not valid JSON"}},
      {"rope_scaling_unknown_kind",
       32,
       false,
       config([](json& c) {
         c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
       }),
       {"config.json", "rope_scaling kind 'dynamic' is not supported"}},
      {"hidden_act_not_silu",
       32,
       false,
       config([](json& c) { c["hidden_act"] = "gelu"; }),
       {"config.json", "hidden_act 'gelu' is not supported"}},
      {"config_group_size_disagrees",
       32,
       false,
       config([](json& c) { c["quantization_config"]["group_size"] = 64; }),
       {"config.json", "group_size 64 disagrees with the tensors", kQ, "2 groups of 32 rows"}},
      {"quantize_config_group_size_disagrees",
       32,
       false,
       [](const fs::path& dir) {
         test::edit_json(dir / "config.json", [](json& c) { c.erase("quantization_config"); });
         test::edit_json(dir / "quantize_config.json", [](json& q) { q["group_size"] = 16; });
       },
       {"quantize_config.json", "group_size 16 disagrees with the tensors"}},
      {"config_says_no_group",
       32,
       false,
       config([](json& c) { c["quantization_config"]["group_size"] = -1; }),
       {"config.json", "group_size -1 disagrees with the tensors"}},
      {"config_desc_act_false_for_act_order",
       32,
       true,
       config([](json& c) { c["quantization_config"]["desc_act"] = false; }),
       {"config.json", "desc_act false disagrees", kQ + ".g_idx is an act-order assignment"}},
      {"config_bits_disagree",
       32,
       false,
       config([](json& c) { c["quantization_config"]["bits"] = 8; }),
       {"config.json", "bits 8 disagrees with the tensors: " + kQ + ".qweight holds 4-bit values"}},
      {"config_quantized_but_tensors_fp16",
       0,
       false,
       config([](json& c) {
         c["quantization_config"] = {{"bits", 4}, {"group_size", 32}};
       }),
       {"config.json", "declares GPTQ", kQ + ".weight", "no .qweight"}},
  };
  return all;
}

class BadInput : public testing::TestWithParam<BadCase> {};

TEST_P(BadInput, LoadFailsWithANamedOneLineError) {
  const BadCase& c = GetParam();
  test::TempDir dir;
  test::write_tiny_model(dir.path(), c.group_size, c.act_order, true, 17);
  ASSERT_NO_THROW(load_model(dir.path())) << "the undamaged model must load";
  c.damage(dir.path());
  const std::string message = test::error_message([&] { load_model(dir.path()); });
  for (const std::string& part : c.expected)
    EXPECT_NE(message.find(part), std::string::npos)
        << "message: " << message << "\nmissing: " << part;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInput, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<BadCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(BadInput, IndexNamingMissingShard) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 32, false, true, 17, 2);
  fs::remove(dir / "model-00001-of-00002.safetensors");
  const std::string message = test::error_message([&] { load_model(dir.path()); });
  EXPECT_NE(message.find("model.safetensors.index.json: shard 'model-00001-of-00002.safetensors'"),
            std::string::npos)
      << message;
}

// Flips random bytes anywhere in a valid file (fixed seed): each load either succeeds or throws
// q4jit::Error; any other exception fails here, and a crash fails the whole suite.
TEST(BadInput, RandomByteFlipsNeverCrash) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 32, true, true, 23);
  const std::string valid = test::read_file(shard(dir.path()));
  uint64_t header_length = 0;
  std::memcpy(&header_length, valid.data(), 8);
  std::mt19937_64 generator(5);
  int errors = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string damaged = valid;
    // Two thirds of the flips hit the header, where the structure lives.
    const size_t span = trial % 3 ? 8 + header_length : damaged.size();
    for (int flip = 0; flip < 1 + trial % 4; ++flip)
      damaged[generator() % span] ^= char(1 << (generator() % 8));
    test::write_file(shard(dir.path()), damaged);
    try {
      load_model(dir.path());
    } catch (const Error&) {
      ++errors;
    } catch (const std::exception& other) {
      FAIL() << "trial " << trial << ": non-q4jit exception: " << other.what();
    }
  }
  EXPECT_GT(errors, 100);  // most header flips must be detected
}

}  // namespace
}  // namespace q4jit
