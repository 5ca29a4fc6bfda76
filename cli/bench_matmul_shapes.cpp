// Per-shape matmul timing of `q4jit bench` (bench_matmul_shapes.hpp): random weights of each
// shape in the loaded layout, copied until the copies exceed the L2 (so every call reads HBM),
// then for each M the chooser's kernel, launched through its tuned family as the engine launches
// it, enqueued on rotating copies and timed per measure.hpp.
#include "cli/bench_matmul_shapes.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include "common/half.hpp"
#include "kernel_sources/dequantize_q4.hpp"
#include "model/gptq.hpp"
#include "runtime/platform.hpp"
#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/matmul_choice.hpp"
#include "tuner/measure.hpp"
#include "tuner/model_shapes.hpp"
#include "tuner/problem_key.hpp"
#include "tuner/tuned_families.hpp"

namespace q4jit::cli {

namespace {

// Tiny models' weights live in L2 whatever the rotation: copies beyond this add nothing.
constexpr int kMaxWeightCopies = 64;

// GPTQ weights of one shape as the engine holds them (rows sorted by group when act-order).
struct HostWeights {
  std::vector<int32_t> qweight;    // [K/8, N]
  std::vector<uint16_t> scales;    // [G, N] fp16
  std::vector<int32_t> qzeros;     // [G, N/8]
  std::vector<int32_t> x_map;      // [K] sorted -> original row; empty unless act-order
  std::vector<int32_t> sorted_of;  // [K] the inverse, for dequantize_q4; empty unless act-order
};

// Random but plausible (the timing does not depend on the values; validation is not done here).
HostWeights random_weights(const MatmulShapeKey& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t G = s.K / s.group_size;
  HostWeights w;
  w.qweight.resize(size_t(s.K / 8 * s.N));
  for (int32_t& word : w.qweight) word = int32_t(uint32_t(rng()));
  w.qzeros.assign(size_t(G * s.N / 8), 0x77777777);
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  w.scales.resize(size_t(G * s.N));
  for (uint16_t& value : w.scales)
    value = float_to_half(scale(rng) / (8.0f * std::sqrt(float(s.K))));
  if (s.act_order) {
    std::vector<int32_t> g_idx(size_t(s.K));
    for (int64_t k = 0; k < s.K; ++k) g_idx[size_t(k)] = int32_t(k / s.group_size);
    std::shuffle(g_idx.begin(), g_idx.end(), rng);
    w.x_map = act_order_permutation(g_idx, int(G));
    w.sorted_of = sorted_row_of(w.x_map);
  }
  return w;
}

struct DeviceWeights {
  DeviceBuffer qweight, scales, qzeros, x_map, sorted_of;
};

// The chooser's configuration as its family names it (tuner/tuned_families.hpp).
std::string config_name(const MatmulChoice& choice) {
  switch (choice.path) {
    case MatmulPath::gemv:
      return to_string(choice.gemv);
    case MatmulPath::mma:
      return to_string(choice.mma);
    case MatmulPath::dequant_gemm:
      return to_string(DequantGemmConfig{choice.dequantize, choice.gemm});
  }
  return "";
}

class MatmulTimer {
 public:
  MatmulTimer(Backend& backend, KernelService& service, const MatmulChooser& chooser,
              double ceiling)
      : backend_(backend), service_(service), chooser_(chooser), ceiling_(ceiling) {}

  ShapeBench bench(const TuneShape& shape, const std::vector<int>& rows);

 private:
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& host) {
    DeviceBuffer buffer = backend_.allocate(std::max<size_t>(host.size() * sizeof(T), 16));
    if (!host.empty())
      backend_.copy_to_device(buffer.raw(), host.data(), host.size() * sizeof(T), {});
    return buffer;
  }
  // The path's family, made on first use and kept (it keeps what it loaded).
  TunedFamily& family(MatmulPath path) {
    std::unique_ptr<TunedFamily>& family = families_[path];
    if (!family) family = make_tuned_family(path, backend_, service_, PostCompileLimits{});
    return *family;
  }
  MatmulTiming time_row(const MatmulShapeKey& s, int M, const std::vector<DeviceWeights>& copies,
                        int64_t weight_bytes);

  Backend& backend_;
  KernelService& service_;
  const MatmulChooser& chooser_;
  double ceiling_;
  std::map<MatmulPath, std::unique_ptr<TunedFamily>> families_;
};

// Launched through the family exactly as the engine launches it (act-order q4_mma gathers x
// once, dequant_gemm dequantizes then multiplies).
MatmulTiming MatmulTimer::time_row(const MatmulShapeKey& s, int M,
                                   const std::vector<DeviceWeights>& copies, int64_t weight_bytes) {
  const MatmulChoice choice = chooser_.choose(s, M);
  const std::string config = config_name(choice);
  TunedFamily& family = this->family(choice.path);
  family.load({config}, 1);
  if (const std::optional<CandidateVerdict> verdict = family.verdict(config))
    throw Error(choice.describe() + ": cannot run (" + verdict->detail + ")");
  std::mt19937 rng(uint32_t(7 + M));
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<uint16_t> x(size_t(M * s.K));
  for (uint16_t& element : x) element = float_to_half(value(rng));
  const DeviceBuffer x_device = upload(x);
  const DeviceBuffer out = backend_.allocate(size_t(M * s.N * 2));
  const int64_t scratch_bytes = std::max<int64_t>(16, family.scratch(config, s, M).bytes);
  const DeviceBuffer scratch = backend_.allocate(size_t(scratch_bytes));
  backend_.memset(scratch.raw(), 0, size_t(scratch_bytes), {});
  const Timing timing = time_calls(backend_, int(copies.size()), [&](int copy, StreamView stream) {
    const DeviceWeights& w = copies[size_t(copy)];
    MatmulOperands operands;
    operands.out = out.raw();
    operands.x = x_device.raw();
    operands.x_map = s.act_order ? w.x_map.raw() : 0;
    operands.sorted_of = s.act_order ? w.sorted_of.raw() : 0;
    operands.qweight = w.qweight.raw();
    operands.scales = w.scales.raw();
    operands.qzeros = w.qzeros.raw();
    operands.workspace = scratch.raw();
    family.launch(config, s, M, operands, stream);
  });
  MatmulTiming row;
  row.M = M;
  row.kernel = choice.describe();
  row.us = timing.median_us;
  row.tbps = row.us > 0 ? double(weight_bytes) / (row.us * 1e-6) / 1e12 : 0;
  row.fraction = ceiling_ > 0 ? row.tbps * 1e12 / ceiling_ : 0;
  return row;
}

ShapeBench MatmulTimer::bench(const TuneShape& shape, const std::vector<int>& rows) {
  const MatmulShapeKey& s = shape.shape;
  const HostWeights host = random_weights(s, uint64_t(s.K) * 131 + uint64_t(s.N));
  ShapeBench result;
  result.shape = shape;
  result.weight_bytes = int64_t(host.qweight.size() + host.qzeros.size() + host.x_map.size()) * 4 +
                        int64_t(host.scales.size()) * 2;
  result.weight_copies = std::min(
      copies_beyond_cache(backend_.current_device(), result.weight_bytes), kMaxWeightCopies);
  std::vector<DeviceWeights> copies(size_t(result.weight_copies));
  for (DeviceWeights& copy : copies) {
    copy = {upload(host.qweight), upload(host.scales), upload(host.qzeros), upload(host.x_map),
            upload(host.sorted_of)};
  }
  for (const int M : rows) result.rows.push_back(time_row(s, M, copies, result.weight_bytes));
  return result;
}

std::string shape_label(const TuneShape& shape) {
  const MatmulShapeKey& s = shape.shape;
  return std::to_string(s.K) + "->" + std::to_string(s.N) + " (" + shape.projections + ", group " +
         std::to_string(s.group_size) + (s.act_order ? ", act-order)" : ")");
}

}  // namespace

MatmulBench bench_model_matmuls(const std::filesystem::path& model_dir,
                                const MatmulBenchOptions& options) {
  const std::vector<TuneShape> shapes = model_matmul_shapes(model_dir);
  auto backend = open_gpu_backend();
  if (!backend) throw backend.error();
  if (backend.value()->device_count() == 0) throw Error("no GPU: no device found");
  backend.value()->select_device(0);
  auto compiler = open_compiler();
  if (!compiler) throw compiler.error();
  KernelStoreOptions store_options;
  store_options.dir = default_kernel_store_dir();
  const KernelStore store(store_options);
  KernelService service(*compiler.value(), &store);
  const TuningDb db({default_tuning_db_path(options.tuning_db), {}});
  const DeviceInfo& device = backend.value()->current_device();
  const MatmulChooser chooser(&db, device_fingerprint(device, *compiler.value()), device);

  MatmulBench bench;
  bench.device = device.name;
  const double ceiling = measure_read_ceiling(*backend.value(), service);
  bench.ceiling_tbps = ceiling / 1e12;
  MatmulTimer timer(*backend.value(), service, chooser, ceiling);
  for (const TuneShape& shape : shapes) {
    bench.shapes.push_back(timer.bench(shape, options.rows));
    if (!options.progress) continue;
    for (const MatmulTiming& row : bench.shapes.back().rows) {
      char line[512];
      std::snprintf(line, sizeof line, "matmul %s M=%d: %.2f us, %.3f TB/s (%.0f%% of %.2f), %s",
                    shape_label(shape).c_str(), row.M, row.us, row.tbps, 100 * row.fraction,
                    bench.ceiling_tbps, row.kernel.c_str());
      options.progress(line);
    }
  }
  return bench;
}

nlohmann::json to_json(const MatmulBench& bench) {
  nlohmann::json shapes = nlohmann::json::array();
  for (const ShapeBench& shape : bench.shapes) {
    nlohmann::json rows = nlohmann::json::array();
    for (const MatmulTiming& row : shape.rows) {
      rows.push_back({{"M", row.M},
                      {"kernel", row.kernel},
                      {"us", row.us},
                      {"tbps", row.tbps},
                      {"fraction_of_ceiling", row.fraction}});
    }
    const MatmulShapeKey& s = shape.shape.shape;
    shapes.push_back({{"projections", shape.shape.projections},
                      {"K", s.K},
                      {"N", s.N},
                      {"group_size", s.group_size},
                      {"act_order", s.act_order},
                      {"weight_bytes", shape.weight_bytes},
                      {"weight_copies", shape.weight_copies},
                      {"rows", rows}});
  }
  return {{"device", bench.device}, {"ceiling_tbps", bench.ceiling_tbps}, {"shapes", shapes}};
}

}  // namespace q4jit::cli
