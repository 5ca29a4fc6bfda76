// --device handling shared by the commands that run a model: which engine runs the forward pass.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "model/engine.hpp"
#include "model/weights.hpp"
#include "tuner/matmul_choice.hpp"

namespace q4jit::cli {

struct DeviceOption {
  std::string device = "auto";
  int prefill_chunk = 2048;  // GpuEngineOptions::prefill_chunk
  bool no_graphs = false;
  bool no_overlap = false;
  bool no_fuse = false;
  std::string tuning_db;
  bool verbose = false;                  // loading steps on stderr
  std::optional<MatmulPath> force_path;  // set by perplexity --validate
  std::string tune = "auto";
  double tune_budget = 60;
  std::string gpu_split;  // --gpu-split text (model/gpu/gpu_split.hpp); empty: one GPU
};

// Adds --device auto|cpu|gpu and the GPU engine's options to a subcommand.
void add_device_option(CLI::App& command, DeviceOption& option);

// The engine for the choice. "auto" runs on the GPU when one can be used and says in one line on
// stderr why not otherwise (no GPU, no NVRTC, out of memory...); "gpu" without a usable GPU is
// an Error.
std::unique_ptr<Engine> make_engine(const Model& model, const DeviceOption& option,
                                    int max_positions);

}  // namespace q4jit::cli
