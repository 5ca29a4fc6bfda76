#include "cli/engine_choice.hpp"

#include <cstdio>

#include "common/error.hpp"
#include "model/gpu/gpu_engine.hpp"
#include "model/ref/cpu_engine.hpp"

namespace q4jit::cli {

void add_device_option(CLI::App& command, DeviceOption& option) {
  command.add_option("--device", option.device, "Where the model runs: auto, cpu or gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  command
      .add_option("--prefill-chunk", option.prefill_chunk,
                  "GPU: tokens per prefill forward at most")
      ->capture_default_str();
  command.add_flag("--no-graphs", option.no_graphs, "GPU: run decode steps without CUDA graphs");
  command.add_flag("--no-overlap", option.no_overlap,
                   "GPU: launch each kernel after the previous one ends (default on sm_90+: "
                   "programmatic dependent launch starts it during the previous one's tail)");
  command.add_flag(
      "--no-fuse", option.no_fuse,
      "GPU: decode with separate norm, SiLU and residual-add kernels (default: fused "
      "into the projections, as stream-K or tile GEMVs, when a step timed at load is faster "
      "that way; --verbose prints the fused, fused with o apart and unfused times)");
  command
      .add_option("--tune", option.tune,
                  "GPU: auto tunes the model's matmuls missing from the tuning database at load "
                  "(nothing when all are stored); off uses stored winners and defaults")
      ->check(CLI::IsMember({"auto", "off"}))
      ->capture_default_str();
  command.add_option("--tune-budget", option.tune_budget, "GPU: seconds --tune auto may take")
      ->capture_default_str();
  command.add_option(
      "--gpu-split", option.gpu_split,
      "GPU: split the layers over GPUs: comma-separated GB (2^30 bytes) of VRAM per split for "
      "weights and KV cache, split i on GPU i (\"20,24\"), or GB@GPU to name the device "
      "(\"0.5@0,8@0\": two splits on GPU 0). Layers go in order, each split taking what fits; "
      "the embedding goes with the first split, the final norm and lm_head with the last");
  command.add_flag("--verbose", option.verbose,
                   "GPU: print the engine's loading steps (tuning, upload, kernels, the splits) on "
                   "stderr");
  command.add_option("--tuning-db", option.tuning_db,
                     "GPU: tuning database file (default $Q4JIT_TUNING_DB, else "
                     "$XDG_CACHE_HOME/q4jit/tuning.sqlite3)");
}

std::unique_ptr<Engine> make_engine(const Model& model, const DeviceOption& option,
                                    int max_positions) {
  // Bad --gpu-split text is an error whatever the device (not a reason to fall back to the CPU).
  const std::vector<SplitRequest> split = parse_gpu_split(option.gpu_split);
  if (!split.empty() && option.device == "cpu")
    throw Error("--gpu-split: splits layers over GPUs; --device cpu runs on none");
  if (option.device == "cpu") return std::make_unique<CpuEngine>(model, max_positions);
  GpuEngineOptions options;
  options.split = split;
  options.max_positions = max_positions;
  options.prefill_chunk = option.prefill_chunk;
  options.graphs = !option.no_graphs;
  options.overlap_launches = !option.no_overlap;
  options.fuse_decode = !option.no_fuse;
  options.tuning_db = option.tuning_db;
  options.force_path = option.force_path;
  options.tune = parse_tune_mode(option.tune);
  options.tune_budget = option.tune_budget;
  if (option.verbose) {
    options.progress = [](const std::string& line) {
      std::fprintf(stderr, "q4jit: %s\n", line.c_str());
    };
  }
  try {
    return std::make_unique<GpuEngine>(model, options);
  } catch (const Error& error) {
    if (option.device == "gpu") {
      throw Error("--device gpu: " + std::string(error.what()))
          .with_hint("use --device cpu (or auto)");
    }
    std::fprintf(stderr, "q4jit: %s; running on the CPU\n", error.what());
  }
  return std::make_unique<CpuEngine>(model, max_positions);
}

}  // namespace q4jit::cli
