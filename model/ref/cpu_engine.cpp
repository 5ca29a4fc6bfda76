// CpuEngine: the Llama forward pass in fp32, written to be read as the specification. The ops it
// calls are in ops.cpp and attention.cpp; loading is model/weights.cpp.
//
// Letters: T = tokens in this call, P = positions in the cache, L = layers, C = hidden,
// H = heads, Hkv = KV heads, D = head_dim, F = intermediate, V = vocab.
// At construction every projection becomes fp32 W [N, K] (GPTQ through dequantize_gptq, fp16
// converted); the model is not needed afterwards. The KV cache holds max_positions positions.
#include <algorithm>
#include <string>

#include "common/error.hpp"
#include "common/half.hpp"
#include "model/ref/cpu_engine.hpp"

namespace q4jit {

namespace {

// Shapes of the fp32 parameters of one layer.
struct LayerParameters {
  std::vector<float> input_norm;  // [C]
  std::vector<float> post_norm;   // [C]
  std::vector<float> q;           // [H*D, C]
  std::vector<float> k;           // [Hkv*D, C]
  std::vector<float> v;           // [Hkv*D, C]
  std::vector<float> o;           // [C, H*D]
  std::vector<float> gate;        // [F, C]
  std::vector<float> up;          // [F, C]
  std::vector<float> down;        // [C, F]
};

std::vector<float> halves_to_float(const std::vector<uint16_t>& bits, size_t expected,
                                   const std::string& name) {
  Q4JIT_CHECK(bits.size() == expected, name + ": has " + std::to_string(bits.size()) +
                                           " values, expected " + std::to_string(expected));
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) values[i] = half_to_float(bits[i]);
  return values;
}

std::vector<float> linear_to_float(const Linear& linear, int K, int N) {
  Q4JIT_CHECK(linear.K == K && linear.N == N, linear.name + ": shape [" + std::to_string(linear.N) +
                                                  ", " + std::to_string(linear.K) +
                                                  "] does not match the config");
  if (linear.gptq) return dequantize_gptq(*linear.gptq);
  return halves_to_float(linear.dense, size_t(N) * K, linear.name);
}

void check_norm(const std::vector<float>& weight, int C, const std::string& name) {
  Q4JIT_CHECK(int64_t(weight.size()) == C, name + ": has " + std::to_string(weight.size()) +
                                               " values, expected " + std::to_string(C));
}

LayerParameters layer_to_float(const LayerWeights& layer, const LlamaConfig& config, int index) {
  const int C = config.hidden_size, F = config.intermediate_size;
  const int HD = config.num_attention_heads * config.head_dim;
  const int HkvD = config.num_key_value_heads * config.head_dim;
  const std::string prefix = "model.layers." + std::to_string(index);
  check_norm(layer.input_norm, C, prefix + ".input_layernorm.weight");
  check_norm(layer.post_norm, C, prefix + ".post_attention_layernorm.weight");
  return LayerParameters{
      .input_norm = layer.input_norm,
      .post_norm = layer.post_norm,
      .q = linear_to_float(layer.q, C, HD),
      .k = linear_to_float(layer.k, C, HkvD),
      .v = linear_to_float(layer.v, C, HkvD),
      .o = linear_to_float(layer.o, HD, C),
      .gate = linear_to_float(layer.gate, C, F),
      .up = linear_to_float(layer.up, C, F),
      .down = linear_to_float(layer.down, F, C),
  };
}

// x[i] += addend[i]: the residual connection.
void add_in_place(float* x, const float* addend, size_t count) {
#pragma omp parallel for schedule(static) if (count >= (size_t(1) << 15))
  for (size_t i = 0; i < count; ++i) x[i] += addend[i];
}

}  // namespace

struct CpuEngine::State {
  LlamaConfig config;
  int max_positions = 0;
  int position = 0;  // positions filled in the cache

  std::vector<float> embed;             // [V, C]
  std::vector<LayerParameters> layers;  // [L]
  std::vector<float> final_norm;        // [C]
  std::vector<float> lm_head_untied;    // [V, C]; empty when tied
  const float* lm_head = nullptr;       // [V, C]: lm_head_untied or embed

  std::vector<float> key_cache;    // [L, P, Hkv, D], RoPE applied
  std::vector<float> value_cache;  // [L, P, Hkv, D]

  // Activations of the current call, kept between calls to avoid reallocating per token.
  std::vector<int> positions;    // [T]
  std::vector<float> x;          // [T, C] residual stream
  std::vector<float> normed;     // [T, C]
  std::vector<float> q;          // [T, H, D]
  std::vector<float> attended;   // [T, H, D]
  std::vector<float> projected;  // [T, C]
  std::vector<float> gate;       // [T, F], then silu(gate) * up
  std::vector<float> up;         // [T, F]

  size_t cache_layer_size() const {
    return size_t(max_positions) * config.num_key_value_heads * config.head_dim;
  }
  void check_tokens(std::span<const int32_t> tokens) const;
  void resize_activations(int T);
  void embed_tokens(std::span<const int32_t> tokens);
  void layer_forward(int layer_index, int T);
  std::vector<float> logits(int T, bool all_logits);
};

CpuEngine::CpuEngine(const Model& model, int max_positions) : state_(std::make_unique<State>()) {
  State& s = *state_;
  const LlamaConfig& config = model.config;
  s.config = config;
  s.max_positions = max_positions <= 0 ? config.max_position_embeddings
                                       : std::min(max_positions, config.max_position_embeddings);
  Q4JIT_CHECK(s.max_positions > 0, model.dir.string() + ": max_position_embeddings must be > 0");
  Q4JIT_CHECK(int(model.weights.layers.size()) == config.num_hidden_layers,
              model.dir.string() + ": weights hold " + std::to_string(model.weights.layers.size()) +
                  " layers, config says " + std::to_string(config.num_hidden_layers));
  Q4JIT_CHECK(
      config.num_key_value_heads > 0 &&
          config.num_attention_heads % config.num_key_value_heads == 0,
      model.dir.string() + ": num_attention_heads is not a multiple of num_key_value_heads");
  const size_t V = config.vocab_size, C = config.hidden_size;
  s.embed = halves_to_float(model.weights.embed, V * C, "model.embed_tokens.weight");
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    s.layers.push_back(layer_to_float(model.weights.layers[l], config, l));
  }
  check_norm(model.weights.final_norm, config.hidden_size, "model.norm.weight");
  s.final_norm = model.weights.final_norm;
  if (!model.weights.lm_head.empty()) {
    s.lm_head_untied = halves_to_float(model.weights.lm_head, V * C, "lm_head.weight");
  }
  s.lm_head = s.lm_head_untied.empty() ? s.embed.data() : s.lm_head_untied.data();
  s.key_cache.assign(config.num_hidden_layers * s.cache_layer_size(), 0.0f);
  s.value_cache.assign(config.num_hidden_layers * s.cache_layer_size(), 0.0f);
}

CpuEngine::~CpuEngine() = default;

const LlamaConfig& CpuEngine::config() const {
  return state_->config;
}
int CpuEngine::max_positions() const {
  return state_->max_positions;
}
int CpuEngine::position() const {
  return state_->position;
}
void CpuEngine::reset() {
  state_->position = 0;
}

MemoryUse CpuEngine::memory_use() const {
  const State& s = *state_;
  auto bytes = [](const std::vector<float>& values) {
    return int64_t(values.size() * sizeof(float));
  };
  MemoryUse use;
  use.weights_bytes = bytes(s.embed) + bytes(s.final_norm) + bytes(s.lm_head_untied);
  for (const LayerParameters& layer : s.layers) {
    for (const std::vector<float>* values :
         {&layer.input_norm, &layer.post_norm, &layer.q, &layer.k, &layer.v, &layer.o, &layer.gate,
          &layer.up, &layer.down})
      use.weights_bytes += bytes(*values);
  }
  use.cache_bytes = bytes(s.key_cache) + bytes(s.value_cache);
  for (const std::vector<float>* values :
       {&s.x, &s.normed, &s.q, &s.attended, &s.projected, &s.gate, &s.up})
    use.workspace_bytes += bytes(*values);
  return use;
}

std::vector<float> CpuEngine::forward(std::span<const int32_t> tokens, bool all_logits) {
  State& s = *state_;
  s.check_tokens(tokens);  // before anything changes: an Error leaves the cache as it was
  const int T = int(tokens.size());
  s.resize_activations(T);
  for (int t = 0; t < T; ++t) s.positions[t] = s.position + t;
  s.embed_tokens(tokens);
  for (int l = 0; l < s.config.num_hidden_layers; ++l) s.layer_forward(l, T);
  std::vector<float> logits = s.logits(T, all_logits);
  s.position += T;
  return logits;
}

void CpuEngine::State::check_tokens(std::span<const int32_t> tokens) const {
  Q4JIT_CHECK(!tokens.empty(), "forward: no tokens given");
  const int64_t end = int64_t(position) + int64_t(tokens.size());
  Q4JIT_CHECK(end <= max_positions, "forward: positions " + std::to_string(position) + ".." +
                                        std::to_string(end - 1) + " exceed max_positions " +
                                        std::to_string(max_positions));
  for (size_t t = 0; t < tokens.size(); ++t) {
    Q4JIT_CHECK(tokens[t] >= 0 && tokens[t] < config.vocab_size,
                "forward: token " + std::to_string(tokens[t]) + " at index " + std::to_string(t) +
                    " is outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
  }
}

void CpuEngine::State::resize_activations(int T) {
  const size_t C = config.hidden_size, F = config.intermediate_size;
  const size_t HD = size_t(config.num_attention_heads) * config.head_dim;
  positions.resize(T);
  x.resize(T * C);
  normed.resize(T * C);
  q.resize(T * HD);
  attended.resize(T * HD);
  projected.resize(T * C);
  gate.resize(T * F);
  up.resize(T * F);
}

void CpuEngine::State::embed_tokens(std::span<const int32_t> tokens) {
  const size_t C = config.hidden_size;
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::copy_n(embed.data() + size_t(tokens[t]) * C, C, x.data() + t * C);
  }
}

// ----------------------------------------------------------------------------------------------
// One decoder layer: x += attention(rms_norm(x)); x += mlp(rms_norm(x)).

void CpuEngine::State::layer_forward(int layer_index, int T) {
  const int C = config.hidden_size, F = config.intermediate_size;
  const int H = config.num_attention_heads, Hkv = config.num_key_value_heads;
  const int D = config.head_dim;
  const float eps = config.rms_norm_eps;
  const float theta = config.rope_theta;
  const float rope_scale =
      config.rope_scaling.kind == RopeScaling::Kind::linear ? config.rope_scaling.factor : 1.0f;
  const LayerParameters& w = layers[layer_index];
  float* keys = key_cache.data() + layer_index * cache_layer_size();      // [P, Hkv, D]
  float* values = value_cache.data() + layer_index * cache_layer_size();  // [P, Hkv, D]
  float* new_keys = keys + size_t(position) * Hkv * D;                    // [T, Hkv, D]
  float* new_values = values + size_t(position) * Hkv * D;                // [T, Hkv, D]

  ref::rms_norm(x.data(), w.input_norm.data(), normed.data(), T, C, eps);
  ref::matmul(normed.data(), w.q.data(), q.data(), T, C, H * D);
  ref::matmul(normed.data(), w.k.data(), new_keys, T, C, Hkv * D);
  ref::matmul(normed.data(), w.v.data(), new_values, T, C, Hkv * D);
  ref::rope(q.data(), positions.data(), T, H, D, theta, rope_scale);
  ref::rope(new_keys, positions.data(), T, Hkv, D, theta, rope_scale);
  ref::attention(q.data(), keys, values, attended.data(), T, position, H, Hkv, D);
  ref::matmul(attended.data(), w.o.data(), projected.data(), T, H * D, C);
  add_in_place(x.data(), projected.data(), size_t(T) * C);

  ref::rms_norm(x.data(), w.post_norm.data(), normed.data(), T, C, eps);
  ref::matmul(normed.data(), w.gate.data(), gate.data(), T, C, F);
  ref::matmul(normed.data(), w.up.data(), up.data(), T, C, F);
  ref::silu_mul(gate.data(), up.data(), gate.data(), size_t(T) * F);
  ref::matmul(gate.data(), w.down.data(), projected.data(), T, F, C);
  add_in_place(x.data(), projected.data(), size_t(T) * C);
}

// ----------------------------------------------------------------------------------------------
// Final norm and lm_head, for every token or only the last.

std::vector<float> CpuEngine::State::logits(int T, bool all_logits) {
  const int C = config.hidden_size, V = config.vocab_size;
  const int rows = all_logits ? T : 1;
  const float* last = x.data() + size_t(T - rows) * C;  // [rows, C]
  ref::rms_norm(last, final_norm.data(), normed.data(), rows, C, config.rms_norm_eps);
  std::vector<float> result(size_t(rows) * V);  // [rows, V]
  ref::matmul(normed.data(), lm_head, result.data(), rows, C, V);
  return result;
}

}  // namespace q4jit
