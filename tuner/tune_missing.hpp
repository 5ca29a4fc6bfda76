// Tuning at model load, for the engine's `--tune auto|off`: tune_missing() tunes exactly the
// matmul problems of a model folder that the tuning database lacks (every path's winner and the
// path decision per weight shape and M bucket, the fusion decision per fused shape and bucket,
// and the attention decisions of the model's attention geometry, autotuner.hpp) and nothing else.
//   - With everything stored it returns at once: 0 compiles, 0 timings, 0 validations, which is
//     what a warm start must cost (counters say so; tests check it).
//   - An fp16 (not GPTQ) model has no q4 matmul to tune: an empty result, no error (its
//     attention keeps the rule unless q4jit tune of a GPTQ model of the same geometry decided).
//   - --tune off: the engine does not call it; MatmulChooser uses what is stored and the
//     built-in defaults for the rest.
// Typical use at load, before constructing the MatmulChooser:
//   if (mode == TuneMode::automatic) {
//     TuneOptions options;
//     options.m_buckets = engine_m_buckets(prefill_chunk);
//     tune_missing(backend, service, db, model_dir, options);
//   }
// Not here: the tuning itself (autotuner.hpp), choosing at run time (matmul_choice.hpp).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "tuner/autotuner.hpp"

namespace q4jit {

enum class TuneMode {
  automatic,  // "auto": tune what is missing at load (the default)
  off,        // "off": never tune at load; stored winners and defaults only
};
// "auto" or "off"; Error naming `option` otherwise.
TuneMode parse_tune_mode(const std::string& text, const std::string& option = "--tune");

// The M buckets an engine runs with prefill chunks of up to `prefill_chunk` rows: 1, 2, 4, ...
// up to the chunk's bucket (decode steps are 1 row, the last chunk of a prompt any size).
std::vector<int> engine_m_buckets(int prefill_chunk);

struct TuneMissingResult {
  TuneCounters counters;  // problems, from_db, tuned, validations, timings, decisions, ...
  std::vector<ProblemOutcome> problems;
  std::vector<DecisionOutcome> decisions;
  std::vector<DecisionOutcome> fusions;    // qkv and gate_up: fused or separate per bucket
  std::vector<DecisionOutcome> attention;  // prefill path per T bucket, decode split per length
};

// The attention geometry of the model in `model_dir` (heads, KV heads, head_dim from its
// config), decided up to max_positions (<= 0: the config's max_position_embeddings).
AttentionGeometry model_attention_geometry(const std::filesystem::path& model_dir,
                                           int64_t max_positions = 0);

// Tunes the problems of the model in `model_dir` that `db` lacks on this device, within
// options.budget_seconds (options.force is ignored: a load never discards stored winners), and
// the attention decisions up to max_positions (the engine's KV cache; <= 0: the config's).
// Error (one line) when the folder is not a model; a read-only (newer-schema) database tunes
// nothing and says so in the outcomes.
TuneMissingResult tune_missing(Backend& backend, KernelService& service, TuningDb& db,
                               const std::filesystem::path& model_dir, TuneOptions options,
                               int64_t max_positions = 0);

}  // namespace q4jit
