// config.json parsing: the defaults of GPTQ_FORMAT.md, eos as int or list, rope_scaling kinds,
// the quantization settings in both places, and errors naming the file and the field. The real
// fixture config is read too. Damaged model folders are in bad_input_test.cpp.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/config.hpp"
#include "tests/model/checkpoint_edit.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

using nlohmann::json;

json minimal_config() {
  return {{"hidden_size", 96},
          {"intermediate_size", 256},
          {"num_hidden_layers", 3},
          {"num_attention_heads", 6},
          {"vocab_size", 1000}};
}

// The message of the Error that parse_config throws for `config`, or "" when none.
std::string parse_error(const json& config) {
  try {
    parse_config(config, "model/config.json");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(Config, DefaultsFollowTheFormatDocument) {
  const LlamaConfig config = parse_config(minimal_config(), "config.json");
  EXPECT_EQ(config.hidden_size, 96);
  EXPECT_EQ(config.intermediate_size, 256);
  EXPECT_EQ(config.num_hidden_layers, 3);
  EXPECT_EQ(config.num_attention_heads, 6);
  EXPECT_EQ(config.num_key_value_heads, 6);
  EXPECT_EQ(config.head_dim, 16);
  EXPECT_EQ(config.vocab_size, 1000);
  EXPECT_EQ(config.rope_theta, 10000.0f);
  EXPECT_EQ(config.rope_scaling.kind, RopeScaling::Kind::none);
  EXPECT_EQ(config.eos_token_ids, std::vector<int>{2});
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_FALSE(config.quantization.has_value());
}

TEST(Config, ExplicitFieldsOverrideDefaults) {
  json input = minimal_config();
  input["num_key_value_heads"] = 2;
  input["head_dim"] = 32;
  input["rope_theta"] = 500000.0;
  input["rms_norm_eps"] = 1e-5;
  input["max_position_embeddings"] = 4096;
  input["eos_token_id"] = {128001, 128009};
  input["bos_token_id"] = 128000;
  input["tie_word_embeddings"] = true;
  input["hidden_act"] = "silu";
  input["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
  const LlamaConfig config = parse_config(input, "config.json");
  EXPECT_EQ(config.num_key_value_heads, 2);
  EXPECT_EQ(config.head_dim, 32);
  EXPECT_EQ(config.rope_theta, 500000.0f);
  EXPECT_FLOAT_EQ(config.rms_norm_eps, 1e-5f);
  EXPECT_EQ(config.max_position_embeddings, 4096);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int>{128001, 128009}));
  EXPECT_EQ(config.bos_token_id, 128000);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.rope_scaling.kind, RopeScaling::Kind::linear);
  EXPECT_EQ(config.rope_scaling.factor, 4.0f);
}

TEST(Config, RopeScalingTypeKeyAndNull) {
  json input = minimal_config();
  input["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_config(input, "c").rope_scaling.factor, 2.0f);
  input["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_config(input, "c").rope_scaling.kind, RopeScaling::Kind::none);
}

TEST(Config, UnsupportedRopeScalingKindsNameFileAndKind) {
  for (const char* kind : {"dynamic", "yarn", "llama3"}) {
    json input = minimal_config();
    input["rope_scaling"] = {{"type", kind}, {"factor", 2.0}};
    const std::string message = parse_error(input);
    EXPECT_NE(message.find("model/config.json"), std::string::npos) << message;
    EXPECT_NE(message.find(std::string("'") + kind + "' is not supported"), std::string::npos)
        << message;
  }
}

TEST(Config, MissingRequiredFieldsAreNamed) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size"}) {
    json input = minimal_config();
    input.erase(field);
    EXPECT_EQ(parse_error(input), std::string("model/config.json: ") + field + " is missing");
  }
}

TEST(Config, WrongTypesAndNonPositiveSizesAreNamed) {
  struct Case {
    const char* field;
    json value;
    const char* problem;
  };
  const Case cases[] = {
      {"hidden_size", "96", "must be an integer"},
      {"hidden_size", 96.5, "must be an integer"},
      {"vocab_size", 0, "must be positive"},
      {"num_hidden_layers", -2, "must be positive"},
      {"num_key_value_heads", 4, "not a multiple of num_key_value_heads"},
      {"intermediate_size", 1ll << 40, "out of range"},
      {"tie_word_embeddings", "yes", "must be true or false"},
      {"rope_theta", "big", "must be a number"},
      {"eos_token_id", "2", "integer or a non-empty list"},
      {"hidden_act", "gelu", "'gelu' is not supported"},
  };
  for (const Case& c : cases) {
    json input = minimal_config();
    input[c.field] = c.value;
    const std::string message = parse_error(input);
    EXPECT_NE(message.find("model/config.json: "), std::string::npos) << message;
    EXPECT_NE(message.find(c.field), std::string::npos) << message;
    EXPECT_NE(message.find(c.problem), std::string::npos) << message;
  }
  EXPECT_NE(parse_error(json::array()).find("not a JSON object"), std::string::npos);
}

TEST(Config, QuantizationConfigInsideConfigJson) {
  json input = minimal_config();
  input["quantization_config"] = {{"bits", 4},
                                  {"group_size", -1},
                                  {"desc_act", true},
                                  {"sym", false},
                                  {"quant_method", "gptq"}};
  const LlamaConfig config = parse_config(input, "here/config.json");
  ASSERT_TRUE(config.quantization.has_value());
  EXPECT_EQ(config.quantization->bits, 4);
  EXPECT_EQ(config.quantization->group_size, -1);
  EXPECT_TRUE(config.quantization->desc_act);
  EXPECT_FALSE(config.quantization->sym);
  EXPECT_EQ(config.quantization->source, "here/config.json");

  input["quantization_config"]["group_size"] = 0;
  EXPECT_NE(parse_error(input).find("quantization_config.group_size must be positive or -1"),
            std::string::npos);
  input["quantization_config"] = {{"quant_method", "awq"}};
  EXPECT_NE(parse_error(input).find("'awq' is not supported"), std::string::npos);
}

TEST(Config, QuantizeConfigJsonBesideConfig) {
  test::TempDir dir;
  test::write_file(dir / "config.json", minimal_config().dump());
  test::write_file(
      dir / "quantize_config.json",
      json{{"bits", 4}, {"group_size", 64}, {"desc_act", false}, {"sym", true}}.dump());
  const LlamaConfig config = load_config(dir.path());
  ASSERT_TRUE(config.quantization.has_value());
  EXPECT_EQ(config.quantization->group_size, 64);
  EXPECT_EQ(config.quantization->source, (dir / "quantize_config.json").string());

  test::write_file(dir / "quantize_config.json", json{{"bits", "four"}}.dump());
  EXPECT_NE(test::error_message([&] {
              load_config(dir.path());
            }).find("quantize_config.json: bits must be an integer"),
            std::string::npos);
}

TEST(Config, LoadConfigNamesMissingAndInvalidFiles) {
  test::TempDir dir;
  const std::string config_path = (dir / "config.json").string();
  EXPECT_EQ(test::error_message([&] { load_config(dir.path()); }), config_path + ": cannot open");
  test::write_file(dir / "config.json", "{\"hidden_size\": ");
  EXPECT_NE(
      test::error_message([&] { load_config(dir.path()); }).find(config_path + ": not valid JSON"),
      std::string::npos);
}

TEST(Config, RoundTripThroughSyntheticWriter) {
  test::TempDir dir;
  SynthSpec spec;
  spec.config = tiny_config(300);
  spec.config.eos_token_ids = {2, 7};
  spec.config.rope_scaling = {RopeScaling::Kind::linear, 2.5f};
  spec.config.rope_theta = 12345.0f;
  spec.config.quantization = QuantizationConfig{4, 32, true, false, ""};
  write_synthetic_model(dir.path(), spec);
  const LlamaConfig config = load_config(dir.path());
  EXPECT_EQ(config.hidden_size, 64);
  EXPECT_EQ(config.intermediate_size, 160);
  EXPECT_EQ(config.num_hidden_layers, 2);
  EXPECT_EQ(config.num_attention_heads, 4);
  EXPECT_EQ(config.num_key_value_heads, 2);
  EXPECT_EQ(config.head_dim, 16);
  EXPECT_EQ(config.vocab_size, 300);
  EXPECT_EQ(config.max_position_embeddings, 256);
  EXPECT_EQ(config.rms_norm_eps, 1e-5f);
  EXPECT_EQ(config.rope_theta, 12345.0f);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int>{2, 7}));
  EXPECT_EQ(config.rope_scaling.factor, 2.5f);
  ASSERT_TRUE(config.quantization.has_value());
  EXPECT_EQ(config.quantization->group_size, 32);
  EXPECT_TRUE(config.quantization->desc_act);
  EXPECT_FALSE(config.quantization->sym);
}

TEST(Config, DefaultFixtureConfig) {
  const LlamaConfig config = load_config(test::default_model_dir());
  EXPECT_EQ(config.hidden_size, 512);
  EXPECT_EQ(config.intermediate_size, 1408);
  EXPECT_EQ(config.num_hidden_layers, 6);
  EXPECT_EQ(config.num_attention_heads, 8);
  EXPECT_EQ(config.num_key_value_heads, 4);
  EXPECT_EQ(config.head_dim, 64);
  EXPECT_EQ(config.vocab_size, 4096);
  EXPECT_EQ(config.eos_token_ids, std::vector<int>{2});
  ASSERT_TRUE(config.quantization.has_value());
  EXPECT_EQ(config.quantization->group_size, 128);
  EXPECT_TRUE(config.quantization->desc_act);
}

}  // namespace
}  // namespace q4jit
