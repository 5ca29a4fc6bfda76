#include "cli/engine_choice.hpp"

#include <cstdio>

#include "common/error.hpp"
#include "model/ref/cpu_engine.hpp"
#include "runtime/platform.hpp"

namespace q4jit::cli {

void add_device_option(CLI::App& command, DeviceOption& option) {
  command.add_option("--device", option.device, "Where the model runs: auto, cpu or gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
}

namespace {

// Why the GPU cannot run the model, or an empty string when it could. Until the GPU forward pass
// lands (issue 6) a present GPU is still a reason: the message says so instead of pretending.
std::string gpu_unavailable_reason() {
  Result<std::unique_ptr<Backend>> backend = open_gpu_backend();
  if (!backend) return backend.error().what();
  return "a GPU is present, but this build has no GPU forward pass yet";
}

}  // namespace

std::unique_ptr<Engine> make_engine(const Model& model, const DeviceOption& option,
                                    int max_positions) {
  if (option.device != "cpu") {
    const std::string reason = gpu_unavailable_reason();
    if (option.device == "gpu") {
      throw Error("--device gpu: " + reason).with_hint("use --device cpu (or auto)");
    }
    std::fprintf(stderr, "q4jit: %s; running on the CPU\n", reason.c_str());
  }
  return std::make_unique<CpuEngine>(model, max_positions);
}

}  // namespace q4jit::cli
