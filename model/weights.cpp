// load_model: a model folder (config.json + safetensors shards) into host memory: GPTQ
// projections via load_gptq_linear (gptq.cpp), fp16/bf16/f32 tensors converted to fp16 bits or
// floats, shapes checked against the config, and the summary `q4jit info` prints. Nothing here
// computes; the CPU reference and the GPU loader read the result.
#include "model/weights.hpp"

#include <cstring>

#include "common/error.hpp"
#include "common/half.hpp"
#include "model/safetensors.hpp"

namespace q4jit {

namespace {

std::vector<uint16_t> as_f16_bits(const TensorView& tensor) {
  if (tensor.dtype == DType::F16) {
    std::vector<uint16_t> bits(tensor.bytes.size() / 2);
    std::memcpy(bits.data(), tensor.bytes.data(), bits.size() * 2);
    return bits;
  }
  const std::vector<float> values = to_float(tensor);  // BF16, F32; other dtypes throw
  std::vector<uint16_t> bits(values.size());
  // One thread for small tensors: waking a team costs more than converting them.
#pragma omp parallel for if (values.size() >= (size_t(1) << 22))
  for (int64_t i = 0; i < int64_t(values.size()); ++i) bits[i] = float_to_half(values[i]);
  return bits;
}

const TensorView& get_shaped(const TensorSet& tensors, const std::string& name,
                             const std::vector<int64_t>& shape) {
  const TensorView& tensor = tensors.get(name);
  expect_shape(tensor, shape);
  return tensor;
}

class Loader {
 public:
  Loader(const TensorSet& tensors, const LlamaConfig& config, Model& model)
      : tensors_(tensors), config_(config), model_(model) {}

  Linear linear(const std::string& name, int K, int N) {
    Linear result;
    result.name = name;
    result.K = K;
    result.N = N;
    // A quantization config promises GPTQ tensors; without one, take what the folder holds.
    const bool has_qweight = tensors_.contains(name + ".qweight");
    if (config_.quantization && !has_qweight && tensors_.contains(name + ".weight"))
      throw Error(config_.quantization->source +
                  ": declares GPTQ quantization but the folder holds " + name +
                  ".weight (fp16, no .qweight)");
    if (config_.quantization || has_qweight) {
      result.gptq = load_gptq_linear(tensors_, name, K, N, config_.quantization);
    } else {
      result.dense = as_f16_bits(get_shaped(tensors_, name + ".weight", {N, K}));
    }
    model_.parameter_count += int64_t(K) * N;
    return result;
  }

  std::vector<float> norm(const std::string& name) {
    model_.parameter_count += config_.hidden_size;
    return to_float(get_shaped(tensors_, name, {config_.hidden_size}));
  }

  std::vector<uint16_t> embedding(const std::string& name) {
    model_.parameter_count += int64_t(config_.vocab_size) * config_.hidden_size;
    return as_f16_bits(get_shaped(tensors_, name, {config_.vocab_size, config_.hidden_size}));
  }

  LayerWeights layer(int index) {
    const LlamaConfig& c = config_;
    const std::string p = "model.layers." + std::to_string(index) + ".";
    const int q_out = c.num_attention_heads * c.head_dim;
    const int kv_out = c.num_key_value_heads * c.head_dim;
    LayerWeights layer;
    layer.input_norm = norm(p + "input_layernorm.weight");
    layer.post_norm = norm(p + "post_attention_layernorm.weight");
    layer.q = linear(p + "self_attn.q_proj", c.hidden_size, q_out);
    layer.k = linear(p + "self_attn.k_proj", c.hidden_size, kv_out);
    layer.v = linear(p + "self_attn.v_proj", c.hidden_size, kv_out);
    layer.o = linear(p + "self_attn.o_proj", q_out, c.hidden_size);
    layer.gate = linear(p + "mlp.gate_proj", c.hidden_size, c.intermediate_size);
    layer.up = linear(p + "mlp.up_proj", c.hidden_size, c.intermediate_size);
    layer.down = linear(p + "mlp.down_proj", c.intermediate_size, c.hidden_size);
    return layer;
  }

 private:
  const TensorSet& tensors_;
  const LlamaConfig& config_;
  Model& model_;
};

// One group size when every projection agrees, else -1 (a no-group model, whose K varies).
QuantizationSummary summarize(const std::vector<LayerWeights>& layers) {
  QuantizationSummary summary;
  for (const LayerWeights& layer : layers) {
    for (const Linear* linear :
         {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down}) {
      if (!linear->gptq) continue;
      const GptqLinear& gptq = *linear->gptq;
      if (!summary.quantized) summary.group_size = gptq.group_size;
      if (summary.group_size != gptq.group_size) summary.group_size = -1;
      summary.quantized = true;
      summary.bits = 4;
      summary.act_order = summary.act_order || gptq.act_order;
      summary.sym = summary.sym && gptq.sym;
    }
  }
  return summary;
}

}  // namespace

Model load_model(const std::filesystem::path& dir) {
  Model model;
  model.dir = dir;
  model.config = load_config(dir);
  const TensorSet tensors = TensorSet::open_folder(dir);
  Loader loader(tensors, model.config, model);

  ModelWeights& weights = model.weights;
  weights.embed = loader.embedding("model.embed_tokens.weight");
  for (int layer = 0; layer < model.config.num_hidden_layers; ++layer)
    weights.layers.push_back(loader.layer(layer));
  weights.final_norm = loader.norm("model.norm.weight");
  if (!model.config.tie_word_embeddings) {
    if (!tensors.contains("lm_head.weight"))
      throw Error(dir.string() +
                  ": tensor 'lm_head.weight' is missing and "
                  "tie_word_embeddings is false");
    weights.lm_head = loader.embedding("lm_head.weight");
  }
  model.quantization = summarize(weights.layers);
  for (const std::string& name : tensors.names())
    model.weight_bytes += int64_t(tensors.get(name).bytes.size());
  return model;
}

}  // namespace q4jit
