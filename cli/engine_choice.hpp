// --device handling shared by the commands that run a model: which engine runs the forward pass.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "model/engine.hpp"
#include "model/weights.hpp"

namespace q4jit::cli {

struct DeviceOption {
  std::string device = "auto";
};

// Adds --device auto|cpu|gpu to a subcommand.
void add_device_option(CLI::App& command, DeviceOption& option);

// The engine for the choice. "auto" runs on the GPU when one can be used and says in one line on
// stderr why not otherwise; "gpu" without a usable GPU is an Error.
std::unique_ptr<Engine> make_engine(const Model& model, const DeviceOption& option,
                                    int max_positions);

}  // namespace q4jit::cli
