// --gpu-split parsing and layer assignment (gpu_split.hpp).
#include "model/gpu/gpu_split.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "common/error.hpp"
#include "kernel_sources/rope_cache.hpp"
#include "model/gpu/device_model.hpp"

namespace q4jit {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

[[noreturn]] void bad_split(const std::string& text, const std::string& problem) {
  throw Error("--gpu-split: '" + text + "': " + problem);
}

// The whole of `word` as a number of type T, or false.
template <typename T>
bool parse_number(const std::string& word, T& value) {
  const char* end = word.data() + word.size();
  const auto [stop, error] = std::from_chars(word.data(), end, value);
  return error == std::errc() && stop == end;
}

SplitRequest parse_entry(const std::string& text, const std::string& entry, int position) {
  const size_t at = entry.find('@');
  const std::string gib = trim(entry.substr(0, at));
  SplitRequest request;
  request.device = position;
  if (gib.empty()) bad_split(text, "an entry has no GiB value");
  if (!parse_number(gib, request.gib) || !std::isfinite(request.gib))
    bad_split(text, "'" + gib + "' is not a number");
  if (request.gib <= 0) bad_split(text, "'" + gib + "' GiB: must be more than 0");
  if (at == std::string::npos) return request;
  const std::string device = trim(entry.substr(at + 1));
  if (!parse_number(device, request.device) || request.device < 0)
    bad_split(text, "'" + device + "' is not a device ordinal (0, 1, ...)");
  return request;
}

// Bytes of the head on split `split`. The embedding is always on split 0 (a first split that
// holds no layer is an Error), and a tied lm_head elsewhere is a copy of it.
int64_t head_bytes(const ModelSizes& sizes, int split) {
  if (!sizes.tied) return sizes.final_norm + sizes.lm_head;
  return sizes.final_norm + (split == 0 ? 0 : sizes.embedding);
}

int64_t budget_bytes(const SplitRequest& request) {
  return static_cast<int64_t>(request.gib * kGiB);
}

std::string format_gib(double gib) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", gib);
  return text;
}

[[noreturn]] void does_not_fit(const std::vector<SplitRequest>& requests, const ModelSizes& sizes) {
  std::string splits;
  double total = 0;
  for (const SplitRequest& request : requests) {
    splits += (splits.empty() ? "" : " + ") + format_gib(request.gib);
    total += request.gib;
  }
  throw Error("--gpu-split: " + format_bytes(sizes.total()) +
              " of weights and cache do not fit in " + format_gib(total) + " GiB (splits " +
              splits + ")");
}

[[noreturn]] void empty_split(const SplitRequest& request, int index, int layer) {
  throw Error("--gpu-split: split " + std::to_string(index + 1) + " (" + format_gib(request.gib) +
              " GiB on GPU " + std::to_string(request.device) + ") holds no layer: layer " +
              std::to_string(layer) + " does not fit in it");
}

}  // namespace

std::vector<SplitRequest> parse_gpu_split(const std::string& text) {
  std::vector<SplitRequest> requests;
  if (trim(text).empty()) return requests;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string entry = trim(text.substr(start, comma - start));
    if (entry.empty()) bad_split(text, "an entry is empty");
    requests.push_back(parse_entry(text, entry, int(requests.size())));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return requests;
}

int64_t ModelSizes::total() const {
  int64_t bytes = embedding + final_norm + lm_head;
  for (int64_t layer : layer_bytes) bytes += layer;
  for (int64_t cache : layer_cache) bytes += cache;
  return bytes;
}

ModelSizes model_sizes(const Model& model, int max_positions) {
  const ModelWeights& weights = model.weights;
  const LlamaConfig& config = model.config;
  ModelSizes sizes;
  sizes.embedding = device_buffer_bytes(weights.embed.size(), 2);
  sizes.final_norm = device_buffer_bytes(weights.final_norm.size(), 2);
  sizes.tied = weights.lm_head.empty();
  sizes.lm_head = sizes.tied ? 0 : device_buffer_bytes(weights.lm_head.size(), 2);
  // K and V: the stride between layers of the engine's cache, fp16.
  const int64_t cache =
      2 * 2 * kv_cache_layer_offset(1, max_positions, config.num_key_value_heads, config.head_dim);
  for (const LayerWeights& layer : weights.layers) {
    sizes.layer_bytes.push_back(layer_device_bytes(layer));
    sizes.layer_cache.push_back(cache);
  }
  return sizes;
}

std::vector<SplitPlan> plan_gpu_split(const std::vector<SplitRequest>& requests,
                                      const ModelSizes& sizes, int device_count) {
  Q4JIT_CHECK(!requests.empty(), "--gpu-split: no splits given");
  for (const SplitRequest& request : requests) {
    if (request.device >= device_count) {
      throw Error("--gpu-split: no GPU " + std::to_string(request.device) + " (" +
                  std::to_string(device_count) + " found)");
    }
  }
  const int layers = int(sizes.layer_bytes.size());
  Q4JIT_CHECK(layers > 0, "--gpu-split: the model has no layers to split");
  std::vector<SplitPlan> plans;
  int split = 0;
  int64_t used = 0;
  for (int l = 0; l < layers; ++l) {
    while (true) {
      const bool opens = int(plans.size()) == split;  // l would be this split's first layer
      int64_t need = sizes.layer_bytes[l] + sizes.layer_cache[l];
      if (plans.empty()) need += sizes.embedding;
      if (l == layers - 1) need += head_bytes(sizes, split);
      if (used + need <= budget_bytes(requests[split])) {
        if (opens) {
          SplitPlan plan;
          plan.device = requests[split].device;
          plan.gib = requests[split].gib;
          plan.first_layer = l;
          plan.embedding = plans.empty();
          plans.push_back(plan);
        }
        SplitPlan& plan = plans.back();
        plan.end_layer = l + 1;
        plan.weight_bytes += need - sizes.layer_cache[l];
        plan.cache_bytes += sizes.layer_cache[l];
        used += need;
        break;
      }
      if (split + 1 == int(requests.size())) does_not_fit(requests, sizes);
      if (opens) empty_split(requests[split], split, l);
      ++split;
      used = 0;
    }
  }
  plans.back().head = true;
  return plans;
}

std::string format_bytes(int64_t bytes) {
  char text[32];
  if (bytes >= int64_t(kGiB)) {
    std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / kGiB);
  } else {
    std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / (1024.0 * 1024.0));
  }
  return text;
}

}  // namespace q4jit
