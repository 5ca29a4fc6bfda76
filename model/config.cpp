// Parsing config.json (Hugging Face Llama) and the GPTQ settings (config.json
// "quantization_config" or quantize_config.json), with the defaults of GPTQ_FORMAT.md. Only reads
// and checks the settings' own consistency; agreement with the tensors is checked in gptq.cpp.
#include "model/config.hpp"

#include <cfloat>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace q4jit {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Reads fields of one JSON object, each failure an Error "<source>: <prefix><field> ...".
class Fields {
 public:
  Fields(const json& object, std::string source, std::string prefix = "")
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool has(const char* field) const {
    return object_.contains(field) && !object_.at(field).is_null();
  }
  Error error(const char* field, const std::string& problem) const {
    return Error(source_ + ": " + prefix_ + field + " " + problem);
  }
  int integer(const char* field) const {
    const json& value = object_.at(field);
    if (!value.is_number_integer()) throw error(field, "must be an integer");
    const bool in_range = value.is_number_unsigned() ? value.get<uint64_t>() <= uint64_t(INT32_MAX)
                                                     : value.get<int64_t>() >= INT32_MIN &&
                                                           value.get<int64_t>() <= INT32_MAX;
    if (!in_range) throw error(field, "is out of range");
    return value.get<int>();
  }
  int required_positive(const char* field) const {
    if (!has(field)) throw error(field, "is missing");
    return positive(field);
  }
  int positive(const char* field) const {
    const int value = integer(field);
    if (value <= 0) throw error(field, "must be positive, got " + std::to_string(value));
    return value;
  }
  int positive_or(const char* field, int fallback) const {
    return has(field) ? positive(field) : fallback;
  }
  float number_or(const char* field, float fallback) const {
    if (!has(field)) return fallback;
    const json& value = object_.at(field);
    if (!value.is_number()) throw error(field, "must be a number");
    return finite_float(value, field);
  }
  bool boolean_or(const char* field, bool fallback) const {
    if (!has(field)) return fallback;
    const json& value = object_.at(field);
    if (!value.is_boolean()) throw error(field, "must be true or false");
    return value.get<bool>();
  }
  std::string string_or(const char* field, const std::string& fallback) const {
    if (!has(field)) return fallback;
    const json& value = object_.at(field);
    if (!value.is_string()) throw error(field, "must be a string");
    return value.get<std::string>();
  }
  const json& at(const char* field) const { return object_.at(field); }
  // Narrowing a double beyond the float range is undefined behaviour: check first.
  float finite_float(const json& value, const char* field) const {
    const double number = value.get<double>();
    if (!std::isfinite(number) || std::fabs(number) > double(FLT_MAX))
      throw error(field, "is out of range");
    return float(number);
  }

 private:
  const json& object_;
  std::string source_;
  std::string prefix_;
};

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& error) {
    throw Error(path.string() + ": not valid JSON (" + error.what() + ")");
  }
}

QuantizationConfig parse_quantization(const json& object, const std::string& source,
                                      const std::string& prefix) {
  if (!object.is_object()) throw Error(source + ": " + prefix + " is not a JSON object");
  const Fields fields(object, source, prefix.empty() ? "" : prefix + ".");
  const std::string method = fields.string_or("quant_method", "gptq");
  if (method != "gptq")
    throw fields.error("quant_method", "'" + method + "' is not supported (only gptq)");
  QuantizationConfig quantization;
  quantization.source = source;
  quantization.bits = fields.positive_or("bits", 4);
  if (fields.has("group_size")) {
    quantization.group_size = fields.integer("group_size");
    if (quantization.group_size == 0 || quantization.group_size < -1)
      throw fields.error("group_size",
                         "must be positive or -1, got " + std::to_string(quantization.group_size));
  }
  quantization.desc_act = fields.boolean_or("desc_act", false);
  quantization.sym = fields.boolean_or("sym", true);
  return quantization;
}

RopeScaling parse_rope_scaling(const Fields& fields) {
  RopeScaling scaling;
  if (!fields.has("rope_scaling")) return scaling;
  const json& object = fields.at("rope_scaling");
  if (!object.is_object()) throw fields.error("rope_scaling", "must be null or an object");
  std::string kind;
  for (const char* key : {"rope_type", "type"})
    if (kind.empty() && object.contains(key) && object.at(key).is_string())
      kind = object.at(key).get<std::string>();
  if (kind.empty()) throw fields.error("rope_scaling", "has no \"type\" or \"rope_type\"");
  if (kind != "linear")
    throw fields.error("rope_scaling", "kind '" + kind + "' is not supported (only linear)");
  if (!object.contains("factor") || !object.at("factor").is_number())
    throw fields.error("rope_scaling", "has no numeric factor");
  scaling.kind = RopeScaling::Kind::linear;
  scaling.factor = fields.finite_float(object.at("factor"), "rope_scaling.factor");
  if (!(scaling.factor > 0.0f)) throw fields.error("rope_scaling", "factor must be positive");
  return scaling;
}

std::vector<int> parse_eos(const Fields& fields) {
  if (!fields.has("eos_token_id")) return {2};
  const json& value = fields.at("eos_token_id");
  if (value.is_number_integer()) return {fields.integer("eos_token_id")};
  if (!value.is_array() || value.empty())
    throw fields.error("eos_token_id", "must be an integer or a non-empty list of integers");
  std::vector<int> ids;
  for (const json& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw fields.error("eos_token_id", "must be an integer or a non-empty list of integers");
    ids.push_back(id.get<int>());
  }
  return ids;
}

}  // namespace

LlamaConfig parse_config(const json& object, const std::string& source) {
  if (!object.is_object()) throw Error(source + ": not a JSON object");
  const Fields fields(object, source);
  LlamaConfig config;
  config.hidden_size = fields.required_positive("hidden_size");
  config.intermediate_size = fields.required_positive("intermediate_size");
  config.num_hidden_layers = fields.required_positive("num_hidden_layers");
  config.num_attention_heads = fields.required_positive("num_attention_heads");
  config.vocab_size = fields.required_positive("vocab_size");
  config.num_key_value_heads =
      fields.positive_or("num_key_value_heads", config.num_attention_heads);
  if (!fields.has("head_dim") && config.hidden_size % config.num_attention_heads != 0)
    throw fields.error("hidden_size", "is not a multiple of num_attention_heads");
  config.head_dim = fields.positive_or("head_dim", config.hidden_size / config.num_attention_heads);
  if (config.num_attention_heads % config.num_key_value_heads != 0)
    throw fields.error("num_attention_heads", "is not a multiple of num_key_value_heads");
  config.max_position_embeddings = fields.positive_or("max_position_embeddings", 2048);
  config.rms_norm_eps = fields.number_or("rms_norm_eps", 1e-6f);
  if (!(config.rms_norm_eps > 0.0f)) throw fields.error("rms_norm_eps", "must be positive");
  config.rope_theta = fields.number_or("rope_theta", 10000.0f);
  if (!(config.rope_theta > 0.0f)) throw fields.error("rope_theta", "must be positive");
  config.rope_scaling = parse_rope_scaling(fields);
  if (fields.has("bos_token_id")) config.bos_token_id = fields.integer("bos_token_id");
  config.eos_token_ids = parse_eos(fields);
  config.tie_word_embeddings = fields.boolean_or("tie_word_embeddings", false);
  const std::string activation = fields.string_or("hidden_act", "silu");
  if (activation != "silu")
    throw fields.error("hidden_act", "'" + activation + "' is not supported (only silu)");
  if (fields.has("quantization_config"))
    config.quantization =
        parse_quantization(fields.at("quantization_config"), source, "quantization_config");
  return config;
}

LlamaConfig load_config(const fs::path& dir) {
  const fs::path config_path = dir / "config.json";
  LlamaConfig config = parse_config(read_json_file(config_path), config_path.string());
  // quantization_config inside config.json wins; quantize_config.json is the older place.
  const fs::path quantize_path = dir / "quantize_config.json";
  if (!config.quantization && fs::exists(quantize_path))
    config.quantization =
        parse_quantization(read_json_file(quantize_path), quantize_path.string(), "");
  return config;
}

}  // namespace q4jit
