// --gpu-split: which layers go to which GPU. Parses the option's text (GiB of VRAM per split,
// each on its own device or a named one) and assigns contiguous layer ranges in order from the
// model's byte counts: a split takes layers while its weights and those layers' KV cache fit in
// its GiB; the embedding goes with the first split, the final norm and lm_head with the last.
// Pure: no GPU, no allocation. Not here: the upload and the forward pass (gpu_engine.hpp), and
// the activations, which the plan does not count (they are small beside weights and cache).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.hpp"

namespace q4jit {

// One entry of --gpu-split: "20" (GiB on the device at its position in the list) or "0.5@1"
// (GiB on device 1, so that several splits can share a device).
struct SplitRequest {
  double gib = 0;
  int device = 0;
  bool operator==(const SplitRequest&) const = default;
};

// The entries of `text` ("20,24", "0.5@0,8@0"; spaces allowed around entries). Empty text: no
// split. Error (one line, "--gpu-split: '<text>': <problem>") for a bad number, a GiB value
// that is not positive, a bad device ordinal, an empty entry.
std::vector<SplitRequest> parse_gpu_split(const std::string& text);

// Device bytes of a model's parts as the GPU engine uploads them (device_model.hpp), and the KV
// cache of each layer at the engine's max_positions.
struct ModelSizes {
  int64_t embedding = 0;             // the token embedding table
  int64_t final_norm = 0;            //
  int64_t lm_head = 0;               // 0 when tied to the embedding
  bool tied = false;                 // lm_head is the embedding: a copy when on another split
  std::vector<int64_t> layer_bytes;  // weights of each layer
  std::vector<int64_t> layer_cache;  // K and V cache of each layer
  int64_t total() const;             // everything on one device (tied: one table)
};

ModelSizes model_sizes(const Model& model, int max_positions);

// The layers [first_layer, end_layer) of one split, on `device`, and what it holds.
struct SplitPlan {
  int device = 0;
  double gib = 0;  // the budget it was given
  int first_layer = 0;
  int end_layer = 0;
  bool embedding = false;    // holds the embedding table (the first split)
  bool head = false;         // holds the final norm and lm_head (the last split)
  int64_t weight_bytes = 0;  // layers, plus embedding and head where held
  int64_t cache_bytes = 0;
  bool operator==(const SplitPlan&) const = default;
};

// Assigns the layers to the requested splits in order. Splits after the last one that receives
// a layer are left out (the model fit before them: "20,24" for a small model uses one GPU); a
// split before it that receives none is an Error (its GiB do not hold the next layer, so the
// option is almost certainly a mistake). Error when the model does not fit, or a device is not
// below device_count.
std::vector<SplitPlan> plan_gpu_split(const std::vector<SplitRequest>& requests,
                                      const ModelSizes& sizes, int device_count);

// "1.3 GiB", "20.0 MiB": bytes for messages.
std::string format_bytes(int64_t bytes);

}  // namespace q4jit
