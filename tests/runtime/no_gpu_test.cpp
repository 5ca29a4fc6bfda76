// No GPU is a normal state: a missing driver library, the toolkit's stub library and a missing
// NVRTC each give a one-line reason, and `q4jit devices` still works (exit code 0).
// Runs everywhere, including the GPU machine: the library paths are overridden per test.
#include <gtest/gtest.h>

#include "runtime/platform.hpp"
#include "tests/runtime/runtime_test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

// The CUDA toolkit's stub libcuda: $Q4JIT_CUDA_STUB, else under $CUDA_HOME or /usr/local/cuda.
std::optional<fs::path> stub_library() {
  std::vector<fs::path> candidates;
  if (const char* path = std::getenv("Q4JIT_CUDA_STUB"); path && *path) candidates.push_back(path);
  if (const char* home = std::getenv("CUDA_HOME"); home && *home) {
    candidates.push_back(fs::path(home) / "lib64/stubs/libcuda.so");
  }
  candidates.push_back("/usr/local/cuda/lib64/stubs/libcuda.so");
  for (const fs::path& candidate : candidates) {
    if (fs::exists(candidate)) return candidate;
  }
  return std::nullopt;
}

TEST(NoGpu, MissingDriverLibrary) {
  test::ScopedEnv env("Q4JIT_LIBCUDA", "/nonexistent/libcuda.so.1");
  const auto backend = open_gpu_backend();
  ASSERT_FALSE(backend.ok());
  const std::string message = backend.error().what();
  EXPECT_TRUE(message.starts_with("no GPU: ")) << message;
  EXPECT_NE(message.find("not found"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(NoGpu, StubLibrary) {
  const auto stub = stub_library();
  if (!stub) GTEST_SKIP() << "no CUDA stub libcuda.so found (set Q4JIT_CUDA_STUB)";
  test::ScopedEnv env("Q4JIT_LIBCUDA", stub->string());
  const auto backend = open_gpu_backend();
  ASSERT_FALSE(backend.ok());
  const std::string message = backend.error().what();
  EXPECT_NE(message.find("stub"), std::string::npos) << message;
  EXPECT_NE(message.find("34"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(NoGpu, MissingNvrtc) {
  test::ScopedEnv env("Q4JIT_LIBNVRTC", "/nonexistent/libnvrtc.so.13");
  const auto compiler = open_compiler();
  ASSERT_FALSE(compiler.ok());
  EXPECT_NE(std::string(compiler.error().what()).find("NVRTC not found"), std::string::npos);
}

TEST(NoGpu, DevicesCommandExplainsAndSucceeds) {
  if (!fs::exists(test::q4jit_binary()))
    GTEST_SKIP() << "q4jit binary not found (set Q4JIT_BINARY)";
  for (const std::string library : {"/nonexistent/libcuda.so.1", "stub"}) {
    std::string path = library;
    if (library == "stub") {
      const auto stub = stub_library();
      if (!stub) continue;
      path = stub->string();
    }
    const auto result = test::run_shell("Q4JIT_LIBCUDA='" + path + "' '" +
                                        test::q4jit_binary().string() + "' devices");
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_TRUE(result.output.starts_with("no GPU: ")) << result.output;
  }
}

}  // namespace
}  // namespace q4jit
