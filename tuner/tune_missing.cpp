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

TuneMissingResult tune_missing(Backend& backend, KernelService& service, TuningDb& db,
                               const std::filesystem::path& model_dir, TuneOptions options) {
  TuneMissingResult result;
  if (!load_config(model_dir).quantization) return result;  // fp16 weights: nothing to tune
  options.force = false;
  Autotuner tuner(backend, service, db, std::move(options));
  result.problems = tuner.tune(model_matmul_shapes(model_dir));
  result.counters = tuner.counters();
  result.decisions = tuner.decisions();
  result.fusions = tuner.fusions();
  return result;
}

}  // namespace q4jit
