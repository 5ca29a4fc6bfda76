// GPU tests of the runtime: compile, load, launch and check rms_norm against a CPU computation;
// a second process loads it from the store with zero compiles; graph capture and replay; a launch
// with more than 48 KB of dynamic shared memory; events, attributes and occupancy.
// Skipped with the printed reason when there is no GPU. Needs no source tree (kernels are
// embedded), so it runs from a build copied to the GPU machine (scripts/gpu_suite.sh).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <random>
#include <thread>

#include "common/half.hpp"
#include "kernel_sources/rms_norm.hpp"
#include "runtime/kernel_service.hpp"
#include "tests/runtime/runtime_test_support.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

struct Gpu {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Compiler> compiler;
};

// Opens device 0 and the compiler, or says why not.
std::optional<Gpu> open_gpu(std::string& reason) {
  auto backend = open_gpu_backend();
  if (!backend) {
    reason = backend.error().what();
    return std::nullopt;
  }
  auto compiler = open_compiler();
  if (!compiler) {
    reason = compiler.error().what();
    return std::nullopt;
  }
  Gpu gpu{std::move(backend.value()), std::move(compiler.value())};
  gpu.backend->select_device(0);
  return gpu;
}

#define Q4JIT_REQUIRE_GPU(var)                     \
  std::string var##_reason;                        \
  auto var##_opened = open_gpu(var##_reason);      \
  if (!var##_opened) GTEST_SKIP() << var##_reason; \
  Gpu& var = *var##_opened

struct RmsNormCase {
  RmsNormShape shape;
  std::vector<uint16_t> x, weight;  // fp16 bits
};

RmsNormCase make_case(int64_t rows, int64_t hidden, uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RmsNormCase c{{rows, hidden}, {}, {}};
  for (int64_t i = 0; i < rows * hidden; ++i) c.x.push_back(float_to_half(normal(random)));
  for (int64_t i = 0; i < hidden; ++i)
    c.weight.push_back(float_to_half(1.0f + 0.1f * normal(random)));
  return c;
}

// Llama's RMSNorm as the kernel computes it: fp32 statistics, the normalized value rounded to
// fp16 before the weight multiply (HF: weight * hidden.to(fp16)).
std::vector<float> reference(const RmsNormCase& c, float eps) {
  std::vector<float> out(c.x.size());
  for (int64_t r = 0; r < c.shape.rows; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < c.shape.hidden; ++i) {
      const double v = half_to_float(c.x[r * c.shape.hidden + i]);
      sum += v * v;
    }
    const float inverse = 1.0f / std::sqrt(float(sum / c.shape.hidden) + eps);
    for (int64_t i = 0; i < c.shape.hidden; ++i) {
      const size_t at = r * c.shape.hidden + i;
      const float normalized = half_to_float(float_to_half(half_to_float(c.x[at]) * inverse));
      out[at] = normalized * half_to_float(c.weight[i]);
    }
  }
  return out;
}

// Tolerance: fp16 output (rel 2^-11) plus a different fp32 reduction order that can move the
// rounded normalized value by one fp16 ulp: 2e-3 relative, 2e-3 absolute.
void expect_close(const std::vector<uint16_t>& got, const std::vector<float>& want,
                  const std::string& label) {
  int mismatches = 0;
  for (size_t i = 0; i < want.size() && mismatches < 5; ++i) {
    const float value = half_to_float(got[i]);
    if (std::fabs(value - want[i]) > 2e-3f + 2e-3f * std::fabs(want[i])) {
      ADD_FAILURE() << label << " [" << i << "]: got " << value << ", want " << want[i];
      ++mismatches;
    }
  }
}

struct DeviceRun {
  DeviceBuffer x, weight, out;
};

DeviceRun upload(Backend& backend, const RmsNormCase& c) {
  DeviceRun run{backend.allocate(c.x.size() * 2), backend.allocate(c.weight.size() * 2),
                backend.allocate(c.x.size() * 2)};
  backend.copy_to_device(run.x.raw(), c.x.data(), c.x.size() * 2, {});
  backend.copy_to_device(run.weight.raw(), c.weight.data(), c.weight.size() * 2, {});
  backend.memset(run.out.raw(), 0, c.x.size() * 2, {});
  return run;
}

void launch_rms_norm(Backend& backend, const LoadedModule& module, const RmsNormConfig& cfg,
                     const RmsNormCase& c, const DeviceRun& run, StreamView stream, float eps) {
  const RmsNormGeometry g = geometry(cfg, c.shape);
  LaunchGeometry launch;
  launch.grid = {g.grid_x, 1, 1};
  launch.block = {g.block_x, 1, 1};
  launch.dynamic_smem_bytes = g.dynamic_smem_bytes;
  launch_kernel(backend, module.function(name_expression(cfg)), launch, stream, run.out.raw(),
                run.x.raw(), run.weight.raw(), static_cast<int>(c.shape.hidden), eps);
}

std::vector<uint16_t> download(Backend& backend, const DeviceRun& run, size_t elements) {
  std::vector<uint16_t> out(elements);
  backend.copy_to_host(out.data(), run.out.raw(), elements * 2, {});
  backend.synchronize({});
  return out;
}

CompileRequest request_for(const Gpu& gpu, const RmsNormConfig& cfg) {
  const CompileTarget target =
      select_target(gpu.backend->current_device().sm(), gpu.compiler->supported_archs());
  return make_request(find_kernel_family("rms_norm"), {to_string(cfg), name_expression(cfg)},
                      target);
}

TEST(GpuRuntime, RmsNormMatchesTheCpuForSeveralConfigs) {
  Q4JIT_REQUIRE_GPU(gpu);
  const RmsNormCase c = make_case(7, 4096 + 8, 11);  // hidden not a multiple of the block
  const std::vector<float> want = reference(c, 1e-5f);
  KernelService service(*gpu.compiler, nullptr, KernelServiceOptions{});
  const std::vector<RmsNormConfig> configs = space(gpu.backend->current_device(), c.shape);
  std::vector<CompileRequest> requests;
  for (const RmsNormConfig& cfg : configs) requests.push_back(request_for(gpu, cfg));
  const auto results = service.get_all(requests, std::max(1u, std::thread::hardware_concurrency()));
  for (size_t i = 0; i < configs.size(); ++i) {
    const RmsNormConfig& cfg = configs[i];
    ASSERT_TRUE(results[i].ok()) << results[i].error().describe();
    const LoadedModule module = gpu.backend->load_module(results[i].value());
    const DeviceRun run = upload(*gpu.backend, c);
    launch_rms_norm(*gpu.backend, module, cfg, c, run, {}, 1e-5f);
    expect_close(download(*gpu.backend, run, c.x.size()), want, to_string(cfg));
  }
}

TEST(GpuRuntime, DynamicSharedMemoryPast48KB) {
  Q4JIT_REQUIRE_GPU(gpu);
  const RmsNormCase c = make_case(3, 32768, 12);  // 64 KB staged row
  const RmsNormConfig cfg{256, 8, true};
  ASSERT_GT(geometry(cfg, c.shape).dynamic_smem_bytes, 48 * 1024);
  if (!legal(cfg, gpu.backend->current_device(), c.shape))
    GTEST_SKIP() << "device has < 64 KB opt-in smem";
  KernelService service(*gpu.compiler, nullptr, KernelServiceOptions{});
  const LoadedModule module = gpu.backend->load_module(service.get(request_for(gpu, cfg)).value());
  const DeviceRun run = upload(*gpu.backend, c);
  launch_rms_norm(*gpu.backend, module, cfg, c, run, {}, 1e-6f);
  expect_close(download(*gpu.backend, run, c.x.size()), reference(c, 1e-6f), "64 KB smem");
  const Function& function = module.function(name_expression(cfg));
  EXPECT_GE(gpu.backend->max_active_blocks_per_sm(function, 256, 65536), 1);
  const FunctionAttributes attributes = gpu.backend->attributes(function);
  EXPECT_GT(attributes.registers, 0);
  EXPECT_GT(attributes.static_smem_bytes, 0);  // block_sum's warp totals
}

TEST(GpuRuntime, GraphCaptureAndReplay) {
  Q4JIT_REQUIRE_GPU(gpu);
  const RmsNormCase c = make_case(5, 2048, 13);
  const RmsNormConfig cfg;
  KernelService service(*gpu.compiler, nullptr, KernelServiceOptions{});
  const LoadedModule module = gpu.backend->load_module(service.get(request_for(gpu, cfg)).value());
  const DeviceRun run = upload(*gpu.backend, c);
  gpu.backend->synchronize({});
  Stream stream = gpu.backend->create_stream();
  gpu.backend->begin_capture(stream);
  gpu.backend->memset(run.out.raw(), 0, c.x.size() * 2, stream);
  launch_rms_norm(*gpu.backend, module, cfg, c, run, stream, 1e-5f);
  const GraphExec graph = gpu.backend->end_capture(stream);
  // Nothing ran during capture.
  EXPECT_EQ(download(*gpu.backend, run, c.x.size())[0], 0);
  Event start = gpu.backend->create_event(), end = gpu.backend->create_event();
  gpu.backend->record(start, stream);
  for (int i = 0; i < 3; ++i) gpu.backend->launch_graph(graph, stream);
  gpu.backend->record(end, stream);
  EXPECT_GE(gpu.backend->elapsed_ms(start, end), 0.0f);
  gpu.backend->synchronize(stream);
  expect_close(download(*gpu.backend, run, c.x.size()), reference(c, 1e-5f), "graph replay");
}

// Page-locked host memory: a copy into it is queued behind the stream's work and an event says
// when it landed; the next copy into the other slot can be queued before the host reads the first.
TEST(GpuRuntime, PageLockedReadbackWithEvents) {
  Q4JIT_REQUIRE_GPU(gpu);
  Backend& backend = *gpu.backend;
  const HostBuffer host = backend.allocate_host(8);
  ASSERT_NE(host.raw(), 0u);
  EXPECT_EQ(host.bytes(), 8u);
  auto* slots = reinterpret_cast<int32_t*>(host.raw());
  slots[0] = slots[1] = -1;
  const std::vector<int32_t> values = {1234567, -7654321};
  const DeviceBuffer device = backend.allocate(8);
  const Stream stream = backend.create_stream();
  backend.copy_to_device(device.raw(), values.data(), 8, stream);
  Event done[2] = {backend.create_event(), backend.create_event()};
  for (int i = 0; i < 2; ++i) {
    backend.copy_to_host(slots + i, device.raw() + 4 * uint64_t(i), 4, stream);
    backend.record(done[i], stream);
  }
  backend.synchronize_event(done[0]);
  EXPECT_EQ(slots[0], values[0]);
  backend.synchronize_event(done[1]);
  EXPECT_EQ(slots[1], values[1]);
}

// Runs in a child process started by WarmStartFromAnotherProcess; skipped otherwise.
TEST(GpuRuntime, WarmStartChild) {
  if (std::getenv("Q4JIT_WARM_START_CHILD") == nullptr)
    GTEST_SKIP() << "runs only as the child of WarmStartFromAnotherProcess";
  Q4JIT_REQUIRE_GPU(gpu);
  KernelStoreOptions options;
  options.dir = default_kernel_store_dir();
  const KernelStore store(options);
  KernelService service(*gpu.compiler, &store);  // Q4JIT_ASSERT_NO_COMPILE=1 from the parent
  const RmsNormCase c = make_case(4, 1024, 14);
  const auto compiled = service.get(request_for(gpu, RmsNormConfig{}));
  ASSERT_TRUE(compiled.ok()) << compiled.error().describe();
  EXPECT_EQ(service.counters().compiles, 0);
  EXPECT_EQ(service.counters().store_hits, 1);
  const LoadedModule module = gpu.backend->load_module(compiled.value());
  const DeviceRun run = upload(*gpu.backend, c);
  launch_rms_norm(*gpu.backend, module, RmsNormConfig{}, c, run, {}, 1e-5f);
  expect_close(download(*gpu.backend, run, c.x.size()), reference(c, 1e-5f), "warm start");
}

TEST(GpuRuntime, WarmStartFromAnotherProcess) {
  Q4JIT_REQUIRE_GPU(gpu);
  test::TempDir dir;
  KernelStoreOptions options;
  options.dir = dir.path();
  const KernelStore store(options);
  KernelService cold(*gpu.compiler, &store, KernelServiceOptions{});
  ASSERT_TRUE(cold.get(request_for(gpu, RmsNormConfig{})).ok());
  EXPECT_EQ(cold.counters().compiles, 1);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const auto result = test::run_shell(
      "Q4JIT_WARM_START_CHILD=1 Q4JIT_ASSERT_NO_COMPILE=1 Q4JIT_CACHE_DIR='" + dir.path().string() +
      "' '" + self + "' --gtest_filter=GpuRuntime.WarmStartChild");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("[  PASSED  ] 1 test"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("SKIPPED"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace q4jit
