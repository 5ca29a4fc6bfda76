// The gemm_f16 family's descriptor: parameters, legality, space, geometry, workspace
// (gemm_f16.hpp).
#include "kernel_sources/gemm_f16.hpp"

#include <algorithm>
#include <initializer_list>
#include <set>

namespace q4jit {

namespace {

// Block and warp layouts (tm, tn, tk, wm, wn): small tiles for decode-sized M (many blocks over
// N), large ones for prefill (more reuse of each loaded tile). The first is the default's.
constexpr int kLayouts[][5] = {
    {64, 128, 32, 2, 2},  {16, 64, 64, 1, 2},  {16, 128, 64, 1, 4},  {16, 128, 32, 1, 2},
    {16, 256, 32, 1, 4},  {32, 64, 64, 1, 2},  {32, 128, 32, 2, 2},  {64, 64, 32, 2, 2},
    {64, 128, 64, 2, 2},  {64, 256, 32, 2, 4}, {128, 128, 32, 2, 2}, {128, 128, 32, 4, 2},
    {128, 256, 32, 2, 4},
};
constexpr int kSplits[] = {1, 2, 4};
// The wgmma kernel's (tm, tn, stages), the default first (the fastest on the H100 at 512 and
// 2,048 rows of the Llama-7B shapes).
constexpr int kWgmmaTiles[][3] = {{128, 128, 4}, {128, 128, 5}, {128, 128, 6},
                                  {128, 128, 3}, {128, 256, 4}, {128, 256, 3},
                                  {64, 128, 4},  {64, 128, 6},  {64, 256, 4}};

GemmConfig wgmma_config(int tile_m, int tile_n, int stages) {
  return GemmConfig{tile_m, tile_n, 64, tile_m / 16, 1, stages, 1, 1};
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t align_up(int64_t value) {
  return ceil_div(value, 256) * 256;
}

bool one_of(int value, std::initializer_list<int> allowed) {
  return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
}

}  // namespace

std::vector<TuningParameter> gemm_f16_parameters() {
  return {
      {"tm", {16, 32, 64, 128}, "rows of x per block"},
      {"tn", {32, 64, 128, 256}, "rows of W (output columns) per block"},
      {"tk", {32, 64}, "K per pipeline stage"},
      {"wm", {1, 2, 4}, "warps along M; tm % (16 * wm) == 0"},
      {"wn", {1, 2, 4}, "warps along N; tn % (16 * wn) == 0; <= 32 mma tiles per warp"},
      {"st", {2, 3, 4}, "cp.async pipeline stages; smem <= opt-in limit"},
      {"sk", {1, 2, 4}, "split-K blocks per output tile (grid z); sk <= ceil(K / tk)"},
      {"wg",
       {0, 1},
       "1: the sm_90a wgmma kernel, sm_90 only: tm 64 or 128, tn 128 or 256, tk 64, wm tm / 16, "
       "wn 1, st 3..6, sk 1"},
  };
}

bool instantiable(const GemmConfig& cfg) {
  if (cfg.wgmma != 0) {
    return cfg.wgmma == 1 && one_of(cfg.tile_m, {64, 128}) && one_of(cfg.tile_n, {128, 256}) &&
           cfg.tile_k == 64 && cfg.warps_m == cfg.tile_m / 16 && cfg.warps_n == 1 &&
           one_of(cfg.stages, {3, 4, 5, 6});
  }
  if (!one_of(cfg.tile_m, {16, 32, 64, 128}) || !one_of(cfg.tile_n, {32, 64, 128, 256}) ||
      !one_of(cfg.tile_k, {32, 64}) || !one_of(cfg.warps_m, {1, 2, 4}) ||
      !one_of(cfg.warps_n, {1, 2, 4}) || !one_of(cfg.stages, {2, 3, 4})) {
    return false;
  }
  if (cfg.tile_m % (16 * cfg.warps_m) != 0 || cfg.tile_n % (16 * cfg.warps_n) != 0) return false;
  return (cfg.tile_m / cfg.warps_m / 16) * (cfg.tile_n / cfg.warps_n / 8) <= 32;
}

bool legal(const GemmConfig& cfg, const DeviceInfo& device, const GemmShape& shape) {
  if (!instantiable(cfg) || !one_of(cfg.split_k, {1, 2, 4})) return false;
  if (device.sm() < 80) return false;  // mma.sync m16n8k16, cp.async, ldmatrix
  if (cfg.wgmma && (device.sm() != 90 || cfg.split_k != 1)) return false;  // sm_90a only
  if (shape.M <= 0 || shape.K <= 0 || shape.N <= 0) return false;
  if (shape.K % 8 != 0 || shape.N % 2 != 0) return false;
  if (shape.M * shape.N >= (int64_t(1) << 31)) return false;
  if (cfg.split_k > ceil_div(shape.K, cfg.tile_k)) return false;
  if (gemm_f16_smem_bytes(cfg) > device.smem_per_block_optin) return false;
  return 32 * cfg.warps_m * cfg.warps_n <= device.max_threads_per_block;
}

std::vector<GemmConfig> gemm_f16_configs() {
  std::vector<GemmConfig> configs = {GemmConfig{}};
  std::set<std::string> seen = {to_string(configs.front())};
  for (const auto& [tile_m, tile_n, tile_k, warps_m, warps_n] : kLayouts) {
    for (int stages : {3, 4}) {
      for (int split : kSplits) {
        const GemmConfig cfg{tile_m, tile_n, tile_k, warps_m, warps_n, stages, split};
        if (instantiable(cfg) && seen.insert(to_string(cfg)).second) configs.push_back(cfg);
      }
    }
  }
  for (const auto& [tile_m, tile_n, stages] : kWgmmaTiles)
    configs.push_back(wgmma_config(tile_m, tile_n, stages));
  return configs;
}

std::vector<GemmConfig> space(const DeviceInfo& device, const GemmShape& shape) {
  std::vector<GemmConfig> result;
  for (const GemmConfig& cfg : gemm_f16_configs()) {
    if (legal(cfg, device, shape)) result.push_back(cfg);
  }
  // wgmma tiles first where legal (stable: the default tile leads them).
  std::stable_partition(result.begin(), result.end(),
                        [](const GemmConfig& cfg) { return cfg.wgmma != 0; });
  return result;
}

int64_t gemm_f16_smem_bytes(const GemmConfig& cfg) {
  // gemm_f16_wgmma_smem_bytes(): the stages of 128-byte rows, and 1,024 bytes of alignment.
  if (cfg.wgmma) return int64_t(cfg.stages) * (cfg.tile_m + cfg.tile_n) * 128 + 1024;
  const int64_t stage = int64_t(cfg.tile_m + cfg.tile_n) * (cfg.tile_k + 8) * 2;
  const int64_t epilogue = int64_t(cfg.tile_m) * (cfg.tile_n + 4) * 4;
  return std::max(cfg.stages * stage, epilogue);
}

GemmGeometry geometry(const GemmConfig& cfg, const GemmShape& shape) {
  GemmGeometry result;
  result.grid_x = static_cast<unsigned>(ceil_div(shape.N, cfg.tile_n));
  result.grid_y = static_cast<unsigned>(ceil_div(shape.M, cfg.tile_m));
  if (cfg.wgmma)
    std::swap(result.grid_x, result.grid_y);  // M tiles along x: a weight tile's
                                              // blocks run together
  result.grid_z = static_cast<unsigned>(cfg.split_k);
  result.block_x = static_cast<unsigned>(32 * cfg.warps_m * cfg.warps_n);
  result.dynamic_smem_bytes = gemm_f16_smem_bytes(cfg);
  return result;
}

GemmWorkspace workspace(const GemmConfig& cfg, const GemmShape& shape) {
  GemmWorkspace result;
  if (cfg.split_k <= 1) return result;
  const GemmGeometry grid = geometry(cfg, shape);
  result.counters_offset = align_up(shape.M * shape.N * 4);
  result.bytes = result.counters_offset + align_up(int64_t(grid.grid_x) * grid.grid_y * 4);
  return result;
}

std::string name_expression(const GemmConfig& cfg) {
  if (cfg.wgmma) {
    return "gemm_f16_wgmma_kernel<" + std::to_string(cfg.tile_m) + ", " +
           std::to_string(cfg.tile_n) + ", " + std::to_string(cfg.stages) + ">";
  }
  return "gemm_f16_kernel<" + std::to_string(cfg.tile_m) + ", " + std::to_string(cfg.tile_n) +
         ", " + std::to_string(cfg.tile_k) + ", " + std::to_string(cfg.warps_m) + ", " +
         std::to_string(cfg.warps_n) + ", " + std::to_string(cfg.stages) + ">";
}

std::string to_string(const GemmConfig& cfg) {
  if (cfg.wgmma) {
    return "wg.tm" + std::to_string(cfg.tile_m) + ".tn" + std::to_string(cfg.tile_n) + ".st" +
           std::to_string(cfg.stages);
  }
  return "tm" + std::to_string(cfg.tile_m) + ".tn" + std::to_string(cfg.tile_n) + ".tk" +
         std::to_string(cfg.tile_k) + ".wm" + std::to_string(cfg.warps_m) + ".wn" +
         std::to_string(cfg.warps_n) + ".st" + std::to_string(cfg.stages) + ".sk" +
         std::to_string(cfg.split_k);
}

KernelFamily gemm_f16_family() {
  KernelFamily family;
  family.name = "gemm_f16";
  family.source = "gemm_f16.cu";
  family.min_sm = 80;  // mma.sync m16n8k16, ldmatrix and cp.async
  family.amd = false;  // inline PTX; an AMD matrix-core (MFMA) version is not written
  family.arch_specific_prefix = "gemm_f16_wgmma_kernel";
  family.arch_specific_sm = 90;
  family.parameters = gemm_f16_parameters();
  const GemmConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  std::set<std::string> expressions;  // configs differing only in sk share one kernel
  for (const GemmConfig& cfg : gemm_f16_configs()) {
    if (expressions.insert(name_expression(cfg)).second) {
      family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
    }
  }
  return family;
}

}  // namespace q4jit
