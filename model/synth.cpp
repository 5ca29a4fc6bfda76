// Synthetic Llama checkpoints: random weights in the real on-disk formats (fp16, or GPTQ 4-bit
// with any group size, act-order, sym or asym), config.json and quantize_config.json. Tensors are
// generated while the writer streams them (add_produced), in parallel 1 MB chunks each seeded from
// (seed, tensor name, chunk), so a 7B-shaped folder takes seconds and the same seed gives the same
// bytes. It writes no tokenizer. Reading these back is weights.cpp's job.
#include "model/synth.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/half.hpp"
#include "model/safetensors.hpp"

namespace q4jit {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// splitmix64: fast, good enough for random weights, trivially seeded per chunk.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
};

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : name) hash = (hash ^ uint8_t(c)) * 0x100000001b3ull;
  return Rng{seed ^ hash}.next();
}

// Fills `out` with elements of type T from generate(rng), 1 MB chunks in parallel.
template <typename T, typename Generate>
void fill_parallel(std::span<std::byte> out, uint64_t seed, Generate generate) {
  constexpr size_t kChunkElements = (1u << 20) / sizeof(T);
  const size_t count = out.size() / sizeof(T);
  const int64_t chunks = int64_t((count + kChunkElements - 1) / kChunkElements);
#pragma omp parallel for schedule(dynamic) if (chunks > 1)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    Rng rng{seed + uint64_t(chunk) * 0x632be59bd9b4e019ull};
    const size_t begin = size_t(chunk) * kChunkElements;
    const size_t end = std::min(count, begin + kChunkElements);
    for (size_t i = begin; i < end; ++i) {
      const T value = generate(rng);
      std::memcpy(out.data() + i * sizeof(T), &value, sizeof(T));
    }
  }
}

using Fill = std::function<void(std::span<std::byte>)>;

Fill uniform_f16(uint64_t seed, float low, float high) {
  return [=](std::span<std::byte> out) {
    fill_parallel<uint16_t>(
        out, seed, [=](Rng& rng) { return float_to_half(low + (high - low) * rng.uniform()); });
  };
}

Fill random_words(uint64_t seed) {
  return [=](std::span<std::byte> out) {
    fill_parallel<uint64_t>(out, seed, [](Rng& rng) { return rng.next(); });
  };
}

// Stored zeros: 7 everywhere (symmetric) or random nibbles in 3..12 (asymmetric, near the middle
// as real asymmetric zeros are).
Fill packed_zeros(uint64_t seed, bool sym) {
  return [=](std::span<std::byte> out) {
    fill_parallel<uint32_t>(out, seed, [=](Rng& rng) {
      if (sym) return uint32_t(0x77777777u);
      const uint64_t bits = rng.next();
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) word |= uint32_t(3 + ((bits >> (8 * j)) & 0xff) % 10) << (4 * j);
      return word;
    });
  };
}

// The projection whose act-order permutation `prefix` shares: GPTQ orders the rows of every
// projection by the Hessian of its input, so q, k and v (one input) share one permutation, as do
// gate and up.
std::string permutation_owner(const std::string& prefix) {
  for (const char* follower : {"k_proj", "v_proj"}) {
    if (prefix.ends_with(follower)) return prefix.substr(0, prefix.size() - 6) + "q_proj";
  }
  if (prefix.ends_with("up_proj")) return prefix.substr(0, prefix.size() - 7) + "gate_proj";
  return prefix;
}

// g_idx: k / group_size, or with act-order a random assignment holding group_size rows per group.
std::vector<int32_t> make_g_idx(int K, int group_size, bool act_order, uint64_t seed) {
  std::vector<int32_t> g_idx(K);
  for (int k = 0; k < K; ++k) g_idx[k] = k / group_size;
  if (act_order) {
    Rng rng{seed};
    for (int k = K - 1; k > 0; --k) std::swap(g_idx[k], g_idx[rng.next() % uint64_t(k + 1)]);
  }
  return g_idx;
}

struct PlannedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  Fill fill;
  size_t bytes() const {
    size_t count = dtype_size(dtype);
    for (int64_t dim : shape) count *= size_t(dim);
    return count;
  }
};

void plan_linear(std::vector<PlannedTensor>& plan, const std::string& prefix, int K, int N,
                 const SynthSpec& spec) {
  const uint64_t seed = spec.seed;
  const float bound = 1.0f / std::sqrt(float(K));
  if (!spec.config.quantization) {
    plan.push_back({prefix + ".weight",
                    DType::F16,
                    {N, K},
                    uniform_f16(tensor_seed(seed, prefix + ".weight"), -bound, bound)});
    return;
  }
  const QuantizationConfig& q = *spec.config.quantization;
  const int group_size = q.group_size == -1 ? K : q.group_size;
  if (q.bits != 4) throw Error(prefix + ": the synthetic writer makes 4-bit models only");
  if (K % 8 != 0 || N % 8 != 0 || group_size <= 0 || K % group_size != 0)
    throw Error(prefix + ": K " + std::to_string(K) + " and N " + std::to_string(N) +
                " do not fit group size " + std::to_string(q.group_size));
  const int G = K / group_size;
  plan.push_back({prefix + ".qweight",
                  DType::I32,
                  {K / 8, N},
                  random_words(tensor_seed(seed, prefix + ".qweight"))});
  plan.push_back({prefix + ".qzeros",
                  DType::I32,
                  {G, N / 8},
                  packed_zeros(tensor_seed(seed, prefix + ".qzeros"), q.sym)});
  // |q - z| averages about 4, so scales near 1/(8 sqrt K) give weights of about 1/(2 sqrt K).
  plan.push_back(
      {prefix + ".scales",
       DType::F16,
       {G, N},
       uniform_f16(tensor_seed(seed, prefix + ".scales"), 0.5f * bound / 8, 1.5f * bound / 8)});
  if (spec.write_g_idx || q.desc_act) {
    const uint64_t g_seed =
        tensor_seed(seed, (spec.shared_act_order ? permutation_owner(prefix) : prefix) + ".g_idx");
    const bool act_order = q.desc_act && G > 1;
    plan.push_back({prefix + ".g_idx", DType::I32, {K}, [=](std::span<std::byte> out) {
                      const std::vector<int32_t> g_idx =
                          make_g_idx(K, group_size, act_order, g_seed);
                      std::memcpy(out.data(), g_idx.data(), out.size());
                    }});
  }
}

std::vector<PlannedTensor> plan_model(const SynthSpec& spec) {
  const LlamaConfig& c = spec.config;
  const int hidden = c.hidden_size;
  const int q_out = c.num_attention_heads * c.head_dim;
  const int kv_out = c.num_key_value_heads * c.head_dim;
  std::vector<PlannedTensor> plan;
  auto norm = [&](const std::string& name) {
    plan.push_back(
        {name, DType::F16, {hidden}, uniform_f16(tensor_seed(spec.seed, name), 0.8f, 1.2f)});
  };
  plan.push_back({"model.embed_tokens.weight",
                  DType::F16,
                  {c.vocab_size, hidden},
                  uniform_f16(tensor_seed(spec.seed, "embed"), -1.0f, 1.0f)});
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    norm(p + "input_layernorm.weight");
    plan_linear(plan, p + "self_attn.q_proj", hidden, q_out, spec);
    plan_linear(plan, p + "self_attn.k_proj", hidden, kv_out, spec);
    plan_linear(plan, p + "self_attn.v_proj", hidden, kv_out, spec);
    plan_linear(plan, p + "self_attn.o_proj", q_out, hidden, spec);
    norm(p + "post_attention_layernorm.weight");
    plan_linear(plan, p + "mlp.gate_proj", hidden, c.intermediate_size, spec);
    plan_linear(plan, p + "mlp.up_proj", hidden, c.intermediate_size, spec);
    plan_linear(plan, p + "mlp.down_proj", c.intermediate_size, hidden, spec);
  }
  norm("model.norm.weight");
  if (!c.tie_word_embeddings) {
    const float bound = 1.0f / std::sqrt(float(hidden));
    plan.push_back({"lm_head.weight",
                    DType::F16,
                    {c.vocab_size, hidden},
                    uniform_f16(tensor_seed(spec.seed, "lm_head"), -bound, bound)});
  }
  return plan;
}

// The shortest decimal that reads back as the same float: 1e-05, not 9.999999747378752e-06.
double float_for_json(float value) {
  char text[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, value);
    if (std::strtof(text, nullptr) == value) break;
  }
  return std::strtod(text, nullptr);
}

json quantization_json(const QuantizationConfig& q) {
  return {{"bits", q.bits},
          {"group_size", q.group_size},
          {"desc_act", q.desc_act},
          {"sym", q.sym},
          {"damp_percent", 0.01},
          {"static_groups", false},
          {"true_sequential", true},
          {"quant_method", "gptq"},
          {"checkpoint_format", "gptq"}};
}

json config_json(const LlamaConfig& c) {
  json config = {{"architectures", {"LlamaForCausalLM"}},
                 {"model_type", "llama"},
                 {"hidden_size", c.hidden_size},
                 {"intermediate_size", c.intermediate_size},
                 {"num_hidden_layers", c.num_hidden_layers},
                 {"num_attention_heads", c.num_attention_heads},
                 {"num_key_value_heads", c.num_key_value_heads},
                 {"head_dim", c.head_dim},
                 {"vocab_size", c.vocab_size},
                 {"hidden_act", "silu"},
                 {"max_position_embeddings", c.max_position_embeddings},
                 {"rms_norm_eps", float_for_json(c.rms_norm_eps)},
                 {"rope_theta", float_for_json(c.rope_theta)},
                 {"rope_scaling", nullptr},
                 {"bos_token_id", c.bos_token_id},
                 {"tie_word_embeddings", c.tie_word_embeddings},
                 {"torch_dtype", "float16"}};
  if (c.rope_scaling.kind == RopeScaling::Kind::linear)
    config["rope_scaling"] = {{"type", "linear"},
                              {"factor", float_for_json(c.rope_scaling.factor)}};
  if (c.eos_token_ids.size() == 1)
    config["eos_token_id"] = c.eos_token_ids[0];
  else
    config["eos_token_id"] = c.eos_token_ids;
  if (c.quantization) config["quantization_config"] = quantization_json(*c.quantization);
  return config;
}

void write_json(const fs::path& path, const json& value) {
  std::ofstream out(path, std::ios::binary);
  out << value.dump(2) << "\n";
  if (!out) throw Error(path.string() + ": cannot write");
}

// Reports each tensor once produced (the writers produce them one at a time, in order).
Fill with_progress(Fill fill, const SynthSpec& spec, std::shared_ptr<int64_t> done, int64_t total) {
  if (!spec.progress) return fill;
  return [fill = std::move(fill), progress = spec.progress, done, total](std::span<std::byte> out) {
    fill(out);
    *done += int64_t(out.size());
    progress(*done, total);
  };
}

std::string shard_name(int index, int shards) {
  if (shards == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", index + 1, shards);
  return name;
}

}  // namespace

LlamaConfig tiny_config(int vocab_size) {
  LlamaConfig config;
  config.hidden_size = 64;
  config.intermediate_size = 160;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 16;
  config.vocab_size = vocab_size;
  config.max_position_embeddings = 256;
  config.rms_norm_eps = 1e-5f;
  return config;
}

void write_synthetic_model(const fs::path& dir, const SynthSpec& spec) {
  std::vector<PlannedTensor> plan = plan_model(spec);
  if (spec.shards < 1 || size_t(spec.shards) > plan.size())
    throw Error(dir.string() + ": cannot split " + std::to_string(plan.size()) + " tensors into " +
                std::to_string(spec.shards) + " shards");
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw Error(dir.string() + ": cannot create the folder (" + error.message() + ")");
  size_t total = 0;
  for (const PlannedTensor& tensor : plan) total += tensor.bytes();

  // A tensor goes to the shard its middle byte falls in, so shards are about equal in size.
  std::vector<SafetensorsWriter> writers(spec.shards);
  json weight_map = json::object();
  auto done = std::make_shared<int64_t>(0);
  size_t offset = 0;
  for (PlannedTensor& tensor : plan) {
    const size_t middle = offset + tensor.bytes() / 2;
    const int shard = int(std::min<size_t>(spec.shards - 1, middle * spec.shards / total));
    offset += tensor.bytes();
    weight_map[tensor.name] = shard_name(shard, spec.shards);
    writers[shard].add_produced(tensor.name, tensor.dtype, tensor.shape,
                                with_progress(std::move(tensor.fill), spec, done, int64_t(total)));
  }
  for (int shard = 0; shard < spec.shards; ++shard) {
    writers[shard].set_metadata("format", "pt");
    writers[shard].write(dir / shard_name(shard, spec.shards));
  }
  if (spec.shards > 1)
    write_json(dir / "model.safetensors.index.json",
               {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  write_json(dir / "config.json", config_json(spec.config));
  if (spec.config.quantization)
    write_json(dir / "quantize_config.json", quantization_json(*spec.config.quantization));
}

}  // namespace q4jit
