// q4jit bench-kernels: validates, then times every configuration of the q4_matmul family on one
// weight shape (random GPTQ weights in the loaded layout), per M, and prints time and effective
// bandwidth (bytes of qweight + scales + qzeros, + x_map when act-order, over time) against the
// measured HBM read ceiling, and the time a plain read of the same bytes takes (the floor for
// this size, launch and ramp included). Timing per ../shared/docs/BENCHMARK.md (measure.hpp).
// Needs a GPU: without one, a one-line error says so.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "common/half.hpp"
#include "model/gptq.hpp"
#include "model/ref/cpu_engine.hpp"
#include "runtime/platform.hpp"
#include "tuner/measure.hpp"
#include "tuner/q4_matmul_runner.hpp"

namespace q4jit::cli {

namespace {

struct BenchArgs {
  std::string shape;
  std::string rows = "1,2,4,8,16";
  int group_size = 128;  // <= 0: no-group
  bool act_order = false;
  bool json = false;
  int top = 10;
  std::string filter;  // comma-separated substrings; a config is timed if it contains one
};

bool passes_filter(const std::string& config, const std::string& filter) {
  if (filter.empty()) return true;
  std::stringstream stream(filter);
  std::string part;
  while (std::getline(stream, part, ',')) {
    if (!part.empty() && config.find(part) != std::string::npos) return true;
  }
  return false;
}

std::vector<int> parse_list(const std::string& text, const std::string& option) {
  std::vector<int> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      values.push_back(std::stoi(item));
    } catch (const std::exception&) {
      throw Error(option + ": '" + item + "' is not a number");
    }
    if (values.back() <= 0) throw Error(option + ": " + item + " must be positive");
  }
  if (values.empty()) throw Error(option + ": no value given");
  return values;
}

// Random weights in the loaded layout (the benchmark's numbers do not depend on the values).
GptqLinear random_linear(int K, int N, int group_size, bool act_order, std::mt19937& rng) {
  GptqLinear linear;
  linear.name = "bench";
  linear.K = K;
  linear.N = N;
  linear.group_size = group_size;
  linear.G = K / group_size;
  linear.act_order = act_order;
  std::uniform_int_distribution<uint32_t> word;
  linear.qweight.resize(size_t(K / 8) * N);
  for (int32_t& value : linear.qweight) value = static_cast<int32_t>(word(rng));
  linear.qzeros.assign(size_t(linear.G) * (N / 8), 0x77777777);
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  linear.scales.resize(size_t(linear.G) * N);
  for (uint16_t& value : linear.scales)
    value = float_to_half(scale(rng) / (8.0f * std::sqrt(float(K))));
  if (act_order) {
    std::vector<int32_t> g_idx(K);
    for (int k = 0; k < K; ++k) g_idx[k] = (k * 7919) % linear.G;  // every group group_size rows
    linear.x_map = act_order_permutation(g_idx, linear.G);
  }
  return linear;
}

// One copy of the weights on the device.
struct WeightCopy {
  DeviceBuffer qweight, scales, qzeros, x_map;
};

struct Row {
  int M = 0;
  std::string config;
  double us = 0, tbps = 0, fraction = 0, error = 0;
  int registers = 0;
  int64_t local_bytes = 0;
};

class Bench {
 public:
  Bench(const BenchArgs& args, Backend& backend, KernelService& service)
      : args_(args), backend_(backend), service_(service) {}

  void run();

 private:
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& host) {
    DeviceBuffer buffer = backend_.allocate(std::max<size_t>(host.size() * sizeof(T), 16));
    if (!host.empty())
      backend_.copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
    return buffer;
  }
  std::vector<Row> bench_rows(int M, const GptqLinear& linear, const std::vector<float>& weight,
                              const std::vector<Q4MatmulKernel>& kernels,
                              const std::vector<WeightCopy>& copies, int64_t weight_bytes);
  double read_floor_us(int64_t bytes, int copies);

  const BenchArgs& args_;
  Backend& backend_;
  KernelService& service_;
  double ceiling_ = 0;
};

std::vector<Row> Bench::bench_rows(int M, const GptqLinear& linear,
                                   const std::vector<float>& weight,
                                   const std::vector<Q4MatmulKernel>& kernels,
                                   const std::vector<WeightCopy>& copies, int64_t weight_bytes) {
  const int K = linear.K, N = linear.N;
  const Q4MatmulShape shape{M, K, N, linear.group_size, linear.act_order};
  std::mt19937 rng(7 + M);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<uint16_t> x(size_t(M) * K);
  std::vector<float> x_float(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    x_float[i] = half_to_float(x[i] = float_to_half(value(rng)));
  std::vector<float> want(size_t(M) * N);
  ref::matmul(x_float.data(), weight.data(), want.data(), M, K, N);

  int64_t workspace_bytes = 16;
  for (const Q4MatmulKernel& kernel : kernels)
    workspace_bytes = std::max(workspace_bytes, workspace(kernel.config, shape).bytes);
  DeviceBuffer x_device = upload(x), out = backend_.allocate(want.size() * 2);
  DeviceBuffer scratch = backend_.allocate(static_cast<size_t>(workspace_bytes));
  backend_.memset(scratch.raw(), 0, static_cast<size_t>(workspace_bytes), {});
  auto operands = [&](int copy) {
    const WeightCopy& w = copies[copy];
    return Q4MatmulOperands{out.raw(),      x_device.raw(), w.x_map.raw(), w.qweight.raw(),
                            w.scales.raw(), w.qzeros.raw(), scratch.raw()};
  };
  std::vector<Row> rows;
  std::vector<uint16_t> got(want.size());
  for (const Q4MatmulKernel& kernel : kernels) {
    if (!legal(kernel.config, backend_.current_device(), shape)) continue;
    // Each config's zeroed area (its layout differs, and two-pass leaves partials behind).
    backend_.memset(scratch.raw(), 0,
                    static_cast<size_t>(workspace(kernel.config, shape).zeroed_bytes), {});
    backend_.memset(out.raw(), 0xff, want.size() * 2, {});
    launch_q4_matmul(backend_, kernel, shape, operands(0), {});
    backend_.copy_to_host(got.data(), out.raw(), got.size() * 2, {});
    backend_.synchronize({});
    double diff = 0, norm = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      const double d = half_to_float(got[i]) - double(want[i]);
      diff += d * d;
      norm += double(want[i]) * want[i];
    }
    const FunctionAttributes attributes = backend_.attributes(kernel.matmul);
    Row row{M,
            to_string(kernel.config),
            0,
            0,
            0,
            std::sqrt(diff / norm),
            attributes.registers,
            attributes.local_bytes};
    if (!(row.error <= tolerance(kernel.config))) {
      std::fprintf(
          stderr,
          "q4jit: bench-kernels: %s at M=%d fails validation (relative error %.2e); not timed\n",
          row.config.c_str(), M, row.error);
      continue;
    }
    const Timing timing =
        time_calls(backend_, static_cast<int>(copies.size()), [&](int copy, StreamView stream) {
          launch_q4_matmul(backend_, kernel, shape, operands(copy), stream);
        });
    row.us = timing.median_us;
    row.tbps = weight_bytes / (row.us * 1e-6) / 1e12;
    row.fraction = row.tbps * 1e12 / ceiling_;
    rows.push_back(row);
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.us < b.us; });
  return rows;
}

// A plain 128-bit read of `bytes` (as many copies as the weights, rotated), one load round per
// thread: what a kernel streaming exactly these bytes could take, launch and ramp included.
double Bench::read_floor_us(int64_t bytes, int copies) {
  CompileRequest request;
  request.family = "memory_read";
  request.config = "default";
  request.source = embedded_kernel_source("memory_read.cu");
  request.name_expressions = {"memory_read_kernel"};
  request.target =
      select_target(backend_.current_device().sm(), service_.compiler().supported_archs());
  Result<CompiledKernel> compiled = service_.get(request);
  if (!compiled) throw compiled.error();
  const LoadedModule module = backend_.load_module(compiled.value());
  const Function& function = module.function("memory_read_kernel");
  const unsigned long long count = static_cast<unsigned long long>((bytes + 15) / 16);
  std::vector<DeviceBuffer> buffers;
  for (int copy = 0; copy < copies; ++copy) {
    buffers.push_back(backend_.allocate(static_cast<size_t>(count * 16)));
    backend_.memset(buffers.back().raw(), 0x5a, static_cast<size_t>(count * 16), {});
  }
  DeviceBuffer sink = backend_.allocate(16);
  LaunchGeometry grid;
  grid.grid = {static_cast<unsigned>((count + 4 * 512 - 1) / (4 * 512)), 1, 1};
  grid.block = {512, 1, 1};
  return time_calls(backend_, copies,
                    [&](int copy, StreamView stream) {
                      launch_kernel(backend_, function, grid, stream, buffers[copy].raw(), count,
                                    sink.raw());
                    })
      .median_us;
}

void Bench::run() {
  const std::vector<int> shape = parse_list(args_.shape, "--shape");
  if (shape.size() != 2) throw Error("--shape: expected K,N");
  const int K = shape[0], N = shape[1];
  const int group_size = args_.group_size > 0 ? args_.group_size : K;
  if (K % 8 != 0 || N % 8 != 0 || group_size % 8 != 0 || K % group_size != 0) {
    throw Error("--shape " + args_.shape + ": K and N must be multiples of 8 and the group size (" +
                std::to_string(group_size) + ", a multiple of 8) must divide K");
  }
  const std::vector<int> rows_list = parse_list(args_.rows, "--m");
  const DeviceInfo& device = backend_.current_device();

  std::vector<Q4MatmulConfig> configs;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (!passes_filter(to_string(cfg), args_.filter)) continue;
    for (int M : rows_list) {
      if (legal(cfg, device, {M, K, N, group_size, args_.act_order})) {
        configs.push_back(cfg);
        break;
      }
    }
  }
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Q4MatmulKernel> kernels;
  for (Result<Q4MatmulKernel>& kernel : load_q4_matmul(backend_, service_, configs, jobs)) {
    if (kernel) {
      kernels.push_back(kernel.value());
    } else {
      std::fprintf(stderr, "q4jit: bench-kernels: %s\n", kernel.error().what());
    }
  }
  ceiling_ = measure_read_ceiling(backend_, service_);

  std::mt19937 rng(1);
  const GptqLinear linear = random_linear(K, N, group_size, args_.act_order, rng);
  const std::vector<float> weight = dequantize_gptq(linear);
  const int64_t weight_bytes =
      int64_t(linear.qweight.size() + linear.qzeros.size() + linear.x_map.size()) * 4 +
      int64_t(linear.scales.size()) * 2;
  std::vector<WeightCopy> copies(copies_beyond_cache(device, weight_bytes));
  for (WeightCopy& copy : copies) {
    copy = {upload(linear.qweight), upload(linear.scales), upload(linear.qzeros),
            upload(linear.x_map)};
  }
  const double floor_us = read_floor_us(weight_bytes, static_cast<int>(copies.size()));

  nlohmann::json report = {{"device", device.name},
                           {"K", K},
                           {"N", N},
                           {"group_size", group_size},
                           {"act_order", args_.act_order},
                           {"weight_bytes", weight_bytes},
                           {"weight_copies", copies.size()},
                           {"ceiling_tbps", ceiling_ / 1e12},
                           {"read_floor_us", floor_us}};
  report["results"] = nlohmann::json::array();
  if (!args_.json) {
    std::printf("%s: %d->%d, group %d%s, %.1f MB of weights x %zu copies, read ceiling %.2f TB/s\n",
                device.name.c_str(), K, N, group_size, args_.act_order ? ", act-order" : "",
                weight_bytes / 1e6, copies.size(), ceiling_ / 1e12);
    std::printf("plain read of the same bytes: %.2f us (%.3f TB/s)\n", floor_us,
                weight_bytes / (floor_us * 1e-6) / 1e12);
  }
  for (int M : rows_list) {
    const std::vector<Row> rows = bench_rows(M, linear, weight, kernels, copies, weight_bytes);
    nlohmann::json per_m = nlohmann::json::array();
    for (const Row& row : rows) {
      per_m.push_back({{"config", row.config},
                       {"us", row.us},
                       {"tbps", row.tbps},
                       {"fraction", row.fraction},
                       {"relative_error", row.error},
                       {"registers", row.registers},
                       {"local_bytes", row.local_bytes}});
    }
    report["results"].push_back({{"M", M}, {"configs", per_m}});
    if (args_.json) continue;
    std::printf("\nM=%d: %zu configurations, best first\n", M, rows.size());
    for (size_t i = 0; i < rows.size() && int(i) < args_.top; ++i) {
      std::printf(
          "  %-46s %9.2f us %6.3f TB/s %5.1f%% of ceiling  err %.1e  regs %d%s\n",
          rows[i].config.c_str(), rows[i].us, rows[i].tbps, 100 * rows[i].fraction, rows[i].error,
          rows[i].registers,
          rows[i].local_bytes > 0 ? (" local " + std::to_string(rows[i].local_bytes)).c_str() : "");
    }
    if (!rows.empty()) {
      std::printf("best M=%d: %s %.2f us %.3f TB/s\n", M, rows[0].config.c_str(), rows[0].us,
                  rows[0].tbps);
    }
  }
  if (args_.json) std::printf("%s\n", report.dump().c_str());
}

void run_bench(const BenchArgs& args) {
  auto backend = open_gpu_backend();
  if (!backend) throw Error("bench-kernels: " + std::string(backend.error().what()));
  if (backend.value()->device_count() == 0) throw Error("bench-kernels: no GPU: no device found");
  backend.value()->select_device(0);
  auto compiler = open_compiler();
  if (!compiler) throw compiler.error();
  // The store makes a second bench (another shape) compile nothing.
  KernelStoreOptions store_options;
  store_options.dir = default_kernel_store_dir();
  const KernelStore store(store_options);
  KernelService service(*compiler.value(), &store);
  Bench(args, *backend.value(), service).run();
}

}  // namespace

void add_bench_kernels_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand(
      "bench-kernels", "Validate and time every q4_matmul configuration on one weight shape (GPU)");
  bench->add_option("--shape", args->shape, "K,N: in_features,out_features, e.g. 4096,12288")
      ->required();
  bench->add_option("--m", args->rows, "Comma-separated rows of x to time (default 1,2,4,8,16)");
  bench->add_option("--group-size", args->group_size,
                    "Rows per group; 0 for no-group (default 128)");
  bench->add_flag("--act-order", args->act_order, "Act-order weights (rows sorted, x gathered)");
  bench->add_flag("--json", args->json, "Print one JSON object instead of text");
  bench->add_option("--top", args->top, "Configurations printed per M (default 10)");
  bench->add_option("--filter", args->filter,
                    "Time only configs containing one of these comma-separated substrings");
  bench->callback([args] { run_bench(*args); });
}

}  // namespace q4jit::cli
