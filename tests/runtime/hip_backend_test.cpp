// The HIP backend without an AMD GPU (the state of every machine here): it reports a one-line
// reason instead of crashing, open_gpu_backend() adds that reason to the CUDA one, and the
// target of an AMD device is its gfx architecture. Runs everywhere; with an AMD GPU present the
// no-GPU tests skip.
#include <gtest/gtest.h>

#include "runtime/platform.hpp"
#include "tests/runtime/runtime_test_support.hpp"

namespace q4jit {
namespace {

TEST(HipBackend, NoAmdGpuIsAOneLineReason) {
  const auto backend = open_gpu_backend(Platform::hip);
  if (backend) {
    GTEST_SKIP() << "an AMD GPU is present: " << backend.value()->device_info(0).name;
  }
  const std::string message = backend.error().what();
  EXPECT_TRUE(message.starts_with("no GPU: ")) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  const bool explained = message.find("no AMD device") != std::string::npos ||
                         message.find("not found") != std::string::npos ||
                         message.find("without the HIP headers") != std::string::npos;
  EXPECT_TRUE(explained) << message;
}

TEST(HipBackend, MissingRuntimeLibrarySaysSo) {
  if (!hip_built()) GTEST_SKIP() << "built without the HIP headers";
  test::ScopedEnv env("Q4JIT_LIBAMDHIP64", "/nonexistent/libamdhip64.so.5");
  const auto backend = open_gpu_backend(Platform::hip);
  ASSERT_FALSE(backend.ok());
  const std::string message = backend.error().what();
  EXPECT_TRUE(message.starts_with("no GPU: ")) << message;
  EXPECT_NE(message.find("libamdhip64 was not found"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  const auto compiler = open_compiler(Platform::hip);
  ASSERT_FALSE(compiler.ok());
  EXPECT_NE(std::string(compiler.error().what()).find("not found"), std::string::npos);
}

// Without an NVIDIA driver, open_gpu_backend() asks HIP too and gives both reasons in one line.
TEST(HipBackend, GpuBackendFallsBackToHipAndExplainsBoth) {
  auto hip_compiler = open_compiler(Platform::hip);
  if (!hip_compiler) GTEST_SKIP() << "no HIP runtime: " << hip_compiler.error().what();
  test::ScopedEnv env("Q4JIT_LIBCUDA", "/nonexistent/libcuda.so.1");
  const auto backend = open_gpu_backend();
  if (backend) {
    EXPECT_EQ(backend.value()->platform(), "hip");  // an AMD GPU answered
    return;
  }
  const std::string message = backend.error().what();
  EXPECT_TRUE(message.starts_with("no GPU: ")) << message;
  EXPECT_NE(message.find("; AMD: "), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(HipBackend, TargetOfAnAmdDeviceIsItsArchitecture) {
  auto compiler = open_compiler(Platform::hip);
  if (!compiler) GTEST_SKIP() << "no hiprtc: " << compiler.error().what();
  DeviceInfo device;
  device.name = "AMD Instinct MI210";
  device.arch_name = "gfx90a:sramecc+:xnack-";
  device.warp_size = 64;
  const CompileTarget target = target_for_device(device, *compiler.value());
  EXPECT_EQ(target.gfx, "gfx90a");
  EXPECT_EQ(target.label(), "gfx90a");
  EXPECT_EQ(target.arch_option(), "--offload-arch=gfx90a");

  DeviceInfo nvidia;
  nvidia.name = "NVIDIA H100";
  nvidia.cc_major = 9;
  EXPECT_THROW(target_for_device(nvidia, *compiler.value()), Error);
  if (compiler.value()->version_tag().starts_with("hip5")) {
    device.arch_name = "gfx942:sramecc+:xnack-";
    EXPECT_THROW(target_for_device(device, *compiler.value()), Error);
  }
  // NVIDIA target selection refuses an AMD device (cc 0) instead of guessing an sm.
  EXPECT_THROW(select_target(device.sm(), {75, 80, 90}), Error);
}

}  // namespace
}  // namespace q4jit
