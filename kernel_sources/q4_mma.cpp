// The q4_mma family's descriptor: parameters, legality, space, geometry, workspace (q4_mma.hpp).
#include "kernel_sources/q4_mma.hpp"

#include <algorithm>
#include <initializer_list>
#include <set>

namespace q4jit {

namespace {

// Warp layouts (tn, tk, wn, wk): 64 to 256 threads, K-tiles of 32 to 256 rows, 32 or 64 columns per
// warp, one to four warps sharing each K-tile. The first is the default's.
constexpr int kLayouts[][4] = {{128, 64, 4, 1}, {64, 64, 2, 2},   {128, 128, 4, 2},
                               {256, 64, 8, 1}, {64, 128, 2, 4},  {128, 64, 2, 2},
                               {64, 32, 2, 1},  {128, 256, 4, 2}, {256, 128, 8, 1}};
constexpr int kTileRows[] = {16, 32, 64};
constexpr int kSplits[] = {1, 2, 4, 8};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t align_up(int64_t value) {
  return ceil_div(value, 256) * 256;
}

// The stage and epilogue sizes of q4_mma.cu's StageLayout.
int64_t stage_bytes(const Q4MmaConfig& cfg) {
  const int64_t chunks = cfg.tile_k / 32;
  const int64_t x_pitch = (cfg.tile_k * 2) % 128 == 0 ? cfg.tile_k + 32 : cfg.tile_k;
  return cfg.tile_m * x_pitch * 2 + (cfg.tile_k / 8) * (cfg.tile_n + 8) * 4 +
         chunks * cfg.tile_n * 2 + chunks * (cfg.tile_n / 8) * 4;
}

}  // namespace

std::vector<TuningParameter> q4_mma_parameters() {
  return {
      {"tm", {16, 32, 64}, "rows of x per block; (tm / 16) * (tn / wn / 8) <= 16"},
      {"tn", {64, 128, 256}, "output columns per block"},
      {"tk", {32, 64, 128, 256}, "rows of K per pipeline stage; (tk / 32) % wk == 0"},
      {"wn", {1, 2, 4, 8}, "warps along N; (tn / wn) % 8 == 0; wn * wk <= 8"},
      {"wk", {1, 2, 4}, "warps sharing each K-tile, summed in shared memory"},
      {"st", {2, 3, 4}, "cp.async pipeline stages; stages * stage bytes <= opt-in smem"},
      {"sk", {1, 2, 4, 8}, "split-K blocks per output tile (grid z); sk <= ceil(K / tk)"},
  };
}

bool instantiable(const Q4MmaConfig& cfg) {
  auto one_of = [](int value, std::initializer_list<int> allowed) {
    for (int a : allowed) {
      if (value == a) return true;
    }
    return false;
  };
  if (!one_of(cfg.tile_m, {16, 32, 64}) || !one_of(cfg.tile_n, {64, 128, 256}) ||
      !one_of(cfg.tile_k, {32, 64, 128, 256}) || !one_of(cfg.warps_k, {1, 2, 4}) ||
      !one_of(cfg.stages, {2, 3, 4})) {
    return false;
  }
  if (cfg.warps_n < 1 || cfg.warps_n > 8 || cfg.tile_n % (8 * cfg.warps_n) != 0) return false;
  if (cfg.warps_n * cfg.warps_k > 8 || (cfg.tile_k / 32) % cfg.warps_k != 0) return false;
  return (cfg.tile_m / 16) * (cfg.tile_n / cfg.warps_n / 8) <= 16;
}

bool legal(const Q4MmaConfig& cfg, const DeviceInfo& device, const Q4MmaShape& shape) {
  if (!instantiable(cfg) || cfg.split_k < 1 || cfg.split_k > 8) return false;
  if (device.sm() < 80) return false;  // mma.sync m16n8k16, cp.async
  if (shape.M <= 0 || shape.K <= 0 || shape.N <= 0) return false;
  if (shape.K % 32 != 0 || shape.N % 8 != 0) return false;
  if (shape.group_size <= 0 || shape.group_size % 32 != 0 || shape.K % shape.group_size != 0) {
    return false;
  }
  if (shape.M * shape.K >= (int64_t(1) << 31) || shape.M * shape.N >= (int64_t(1) << 31)) {
    return false;  // int element offsets inside a row block
  }
  if (cfg.split_k > ceil_div(shape.K, cfg.tile_k)) return false;  // no empty splits
  if (q4_mma_smem_bytes(cfg) > device.smem_per_block_optin) return false;
  return 32 * cfg.warps_n * cfg.warps_k <= device.max_threads_per_block;
}

std::vector<Q4MmaConfig> q4_mma_configs() {
  std::vector<Q4MmaConfig> configs = {Q4MmaConfig{}};
  std::set<std::string> seen = {to_string(configs.front())};
  for (const auto& [tile_n, tile_k, warps_n, warps_k] : kLayouts) {
    const bool first = tile_n == kLayouts[0][0] && tile_k == kLayouts[0][1] &&
                       warps_n == kLayouts[0][2] && warps_k == kLayouts[0][3];
    for (int tile_m : kTileRows) {
      for (int stages : {2, 3, 4}) {
        if (stages == 2 && !first) continue;  // two stages only on the default layout
        for (int split : kSplits) {
          const Q4MmaConfig cfg{tile_m, tile_n, tile_k, warps_n, warps_k, stages, split};
          if (instantiable(cfg) && seen.insert(to_string(cfg)).second) configs.push_back(cfg);
        }
      }
    }
  }
  return configs;
}

std::vector<Q4MmaConfig> space(const DeviceInfo& device, const Q4MmaShape& shape) {
  std::vector<Q4MmaConfig> result;
  for (const Q4MmaConfig& cfg : q4_mma_configs()) {
    if (legal(cfg, device, shape)) result.push_back(cfg);
  }
  return result;
}

Q4MmaConfig q4_mma_default(const DeviceInfo& device, const Q4MmaShape& shape) {
  // Fastest on the H100 in the sweep of the Llama-7B shapes (q4_mma bench, g128): small tiles
  // with a deep K-tile while the weights dominate, 64 x 256 tiles once the product is compute
  // bound (239 TFLOP/s at M = 1920).
  std::vector<Q4MmaConfig> preferred;
  if (shape.M <= 32) {
    preferred = {{16, 128, 256, 4, 2, 4, 1}};
  } else if (shape.M <= 64) {
    preferred = {{64, 128, 256, 4, 2, 3, 1}};
  } else {
    preferred = {{64, 256, 128, 8, 1, 4, 1}, {64, 128, 64, 4, 1, 4, 1}};
  }
  for (const Q4MmaConfig& cfg : preferred) {
    if (legal(cfg, device, shape)) return cfg;
  }
  const std::vector<Q4MmaConfig> legal_configs = space(device, shape);
  return legal_configs.empty() ? Q4MmaConfig{} : legal_configs.front();
}

int64_t q4_mma_smem_bytes(const Q4MmaConfig& cfg) {
  const int64_t epilogue = int64_t(cfg.tile_m) * (cfg.tile_n + 4) * 4;
  return std::max(cfg.stages * stage_bytes(cfg), epilogue);
}

Q4MmaGeometry geometry(const Q4MmaConfig& cfg, const Q4MmaShape& shape) {
  Q4MmaGeometry result;
  result.grid_x = static_cast<unsigned>(ceil_div(shape.N, cfg.tile_n));
  result.grid_y = static_cast<unsigned>(ceil_div(shape.M, cfg.tile_m));
  result.grid_z = static_cast<unsigned>(cfg.split_k);
  result.block_x = static_cast<unsigned>(32 * cfg.warps_n * cfg.warps_k);
  result.dynamic_smem_bytes = q4_mma_smem_bytes(cfg);
  return result;
}

Q4MmaWorkspace workspace(const Q4MmaConfig& cfg, const Q4MmaShape& shape) {
  Q4MmaWorkspace result;
  if (cfg.split_k <= 1) return result;
  const Q4MmaGeometry grid = geometry(cfg, shape);
  result.counters_offset = align_up(shape.M * shape.N * 4);
  result.bytes = result.counters_offset + align_up(int64_t(grid.grid_x) * grid.grid_y * 4);
  return result;
}

std::string name_expression(const Q4MmaConfig& cfg) {
  return "q4_mma_kernel<" + std::to_string(cfg.tile_m) + ", " + std::to_string(cfg.tile_n) + ", " +
         std::to_string(cfg.tile_k) + ", " + std::to_string(cfg.warps_n) + ", " +
         std::to_string(cfg.warps_k) + ", " + std::to_string(cfg.stages) + ">";
}

std::string to_string(const Q4MmaConfig& cfg) {
  return "tm" + std::to_string(cfg.tile_m) + ".tn" + std::to_string(cfg.tile_n) + ".tk" +
         std::to_string(cfg.tile_k) + ".wn" + std::to_string(cfg.warps_n) + ".wk" +
         std::to_string(cfg.warps_k) + ".st" + std::to_string(cfg.stages) + ".sk" +
         std::to_string(cfg.split_k);
}

KernelFamily q4_mma_family() {
  KernelFamily family;
  family.name = "q4_mma";
  family.source = "q4_mma.cu";
  family.min_sm = 80;  // mma.sync m16n8k16 and cp.async
  family.amd = false;  // inline PTX; an AMD matrix-core (MFMA) version is not written
  family.parameters = q4_mma_parameters();
  const Q4MmaConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  std::set<std::string> expressions;  // configs differing only in sk share one kernel
  for (const Q4MmaConfig& cfg : q4_mma_configs()) {
    if (expressions.insert(name_expression(cfg)).second) {
      family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
    }
  }
  return family;
}

}  // namespace q4jit
