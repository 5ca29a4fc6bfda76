#include "cli/engine_choice.hpp"

#include "common/error.hpp"
#include "model/ref/cpu_engine.hpp"

namespace q4jit::cli {

void add_device_option(CLI::App& command, DeviceOption& option) {
  command.add_option("--device", option.device, "Where the model runs: auto, cpu or gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
}

std::unique_ptr<Engine> make_engine(const Model& model, const DeviceOption& option,
                                    int max_positions) {
  if (option.device == "gpu") {
    throw Error("--device gpu: the GPU forward pass is not available in this build yet")
        .with_hint("use --device cpu (or auto)");
  }
  return std::make_unique<CpuEngine>(model, max_positions);
}

}  // namespace q4jit::cli
