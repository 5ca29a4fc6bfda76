// q4jit info: what a model folder holds, read from its config and tensors.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "model/weights.hpp"

namespace q4jit::cli {

namespace {

struct InfoArgs {
  std::string model_dir;
  bool json = false;
};

nlohmann::json describe(const Model& model) {
  const LlamaConfig& config = model.config;
  const QuantizationSummary& quantization = model.quantization;
  nlohmann::json eos = config.eos_token_ids;
  return {
      {"model", model.dir.string()},
      {"architecture", "llama"},
      {"layers", config.num_hidden_layers},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"heads", config.num_attention_heads},
      {"kv_heads", config.num_key_value_heads},
      {"head_dim", config.head_dim},
      {"vocab_size", config.vocab_size},
      {"max_positions", config.max_position_embeddings},
      {"rope_theta", config.rope_theta},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"bos_token_id", config.bos_token_id},
      {"eos_token_ids", eos},
      {"quantized", quantization.quantized},
      {"bits", quantization.bits},
      {"group_size", quantization.group_size},
      {"act_order", quantization.act_order},
      {"sym", quantization.sym},
      {"parameters", model.parameter_count},
      {"weight_bytes", model.weight_bytes},
  };
}

std::string group_text(const QuantizationSummary& quantization) {
  if (!quantization.quantized) return "-";
  if (quantization.group_size < 0) return "none (one group per column)";
  return std::to_string(quantization.group_size);
}

void print_text(const Model& model) {
  const LlamaConfig& config = model.config;
  const QuantizationSummary& quantization = model.quantization;
  std::printf("model           %s\n", model.dir.c_str());
  std::printf("architecture    llama, %d layers, hidden %d, intermediate %d\n",
              config.num_hidden_layers, config.hidden_size, config.intermediate_size);
  std::printf("attention       %d heads, %d KV heads, head_dim %d, rope_theta %g\n",
              config.num_attention_heads, config.num_key_value_heads, config.head_dim,
              config.rope_theta);
  std::printf("vocabulary      %d tokens, max positions %d\n", config.vocab_size,
              config.max_position_embeddings);
  if (quantization.quantized) {
    std::printf("quantization    GPTQ %d-bit, group size %s, act-order %s, %s\n", quantization.bits,
                group_text(quantization).c_str(), quantization.act_order ? "yes" : "no",
                quantization.sym ? "symmetric" : "asymmetric");
  } else {
    std::printf("quantization    none (fp16)\n");
  }
  std::printf("parameters      %lld (%.1f M)\n", static_cast<long long>(model.parameter_count),
              model.parameter_count / 1e6);
  std::printf("weight bytes    %lld (%.1f MB)\n", static_cast<long long>(model.weight_bytes),
              model.weight_bytes / 1e6);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* command = app.add_subcommand(
      "info",
      "Show a model's architecture, quantization (group size, act-order, sym/asym), "
      "parameter and byte counts");
  command->add_option("-m,--model", args->model_dir, "Model folder (config.json, *.safetensors)")
      ->required();
  command->add_flag("--json", args->json, "Print one JSON object instead of text");
  command->callback([args] {
    const Model model = load_model(args->model_dir);
    if (args->json) {
      std::printf("%s\n", describe(model).dump().c_str());
    } else {
      print_text(model);
    }
  });
}

}  // namespace q4jit::cli
