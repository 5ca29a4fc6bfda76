// The GPU and NVRTC that the tuner's GPU tests (gpu_tune_test.cpp, gpu_attention_test.cpp) open,
// or why there is none (the tests skip with it).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "runtime/platform.hpp"

namespace q4jit::test {

struct Gpu {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Compiler> compiler;
};

// Device 0 and the compiler; nullopt with `why` set when either is missing.
inline std::optional<Gpu> open_gpu(std::string& why) {
  auto backend = open_gpu_backend();
  if (!backend) {
    why = backend.error().what();
    return std::nullopt;
  }
  if (backend.value()->device_count() == 0) {
    why = "no GPU: no device";
    return std::nullopt;
  }
  auto compiler = open_compiler();
  if (!compiler) {
    why = compiler.error().what();
    return std::nullopt;
  }
  backend.value()->select_device(0);
  return Gpu{std::move(backend.value()), std::move(compiler.value())};
}

}  // namespace q4jit::test
