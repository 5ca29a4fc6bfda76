// Tuning the missing problems of a model at load (tune_missing.hpp).
#include "tuner/tune_missing.hpp"

#include "common/error.hpp"
#include "model/config.hpp"
#include "tuner/model_shapes.hpp"

namespace q4jit {

TuneMode parse_tune_mode(const std::string& text, const std::string& option) {
  if (text == "auto") return TuneMode::automatic;
  if (text == "off") return TuneMode::off;
  throw Error(option + ": '" + text + "' is not one of auto, off");
}

std::vector<int> engine_m_buckets(int prefill_chunk) {
  std::vector<int> buckets = {1};
  const int largest = m_bucket(std::max(prefill_chunk, 1));
  while (buckets.back() < largest) buckets.push_back(buckets.back() * 2);
  return buckets;
}

AttentionGeometry model_attention_geometry(const std::filesystem::path& model_dir,
                                           int64_t max_positions) {
  const LlamaConfig config = load_config(model_dir);
  return {config.num_attention_heads, config.num_key_value_heads, config.head_dim,
          max_positions > 0 ? max_positions : config.max_position_embeddings};
}

TuneMissingResult tune_missing(Backend& backend, KernelService& service, TuningDb& db,
                               const std::filesystem::path& model_dir, TuneOptions options,
                               int64_t max_positions) {
  TuneMissingResult result;
  if (!load_config(model_dir).quantization) return result;  // fp16 weights: nothing to tune
  options.force = false;
  Autotuner tuner(backend, service, db, std::move(options));
  result.problems = tuner.tune(model_matmul_shapes(model_dir),
                               model_attention_geometry(model_dir, max_positions));
  result.counters = tuner.counters();
  result.decisions = tuner.decisions();
  result.fusions = tuner.fusions();
  result.attention = tuner.attention();
  return result;
}

}  // namespace q4jit
