// The q4_matmul family's descriptor: parameters, legality, space, geometry and workspace (see
// q4_matmul.hpp).
#include "kernel_sources/q4_matmul.hpp"

#include "common/error.hpp"

#include <algorithm>
#include <set>

namespace q4jit {

namespace {

constexpr int kLayoutThreads[] = {64, 128, 256};
constexpr int kSlices[] = {256, 512, 1024};
constexpr int kRowsPerBlock[] = {1, 2, 4, 8};
// (columns per thread, load bits): whole 64- and 128-bit loads (narrower ones never won on the
// H100; the 32-bit load stays on an anchor layout).
constexpr int kColumnLoads[][2] = {{2, 64}, {4, 128}, {8, 128}};
// Persistent grids {bt, cpt, lw, ks, mb, p}: p blocks per SM that fit without spills, the ones
// measured fastest on the H100 at M = 1 (and for mb 2..8 the best few of the layouts above).
constexpr int kPersistent[][6] = {
    {256, 4, 128, 256, 1, 4}, {256, 4, 128, 256, 1, 3}, {256, 4, 128, 512, 1, 3},
    {256, 8, 128, 256, 1, 3}, {128, 4, 128, 256, 1, 6}, {128, 8, 128, 512, 1, 4},
    {256, 4, 128, 256, 2, 3}, {256, 8, 128, 256, 2, 2}, {256, 4, 128, 256, 4, 2},
    {256, 2, 64, 512, 8, 2},  {256, 2, 64, 1024, 8, 2},
};
// Stream-K layouts {bt, cpt, lw, mb, sr, p} (q4_stream.cuh): p blocks of bt threads per SM cap
// the registers (80 for p6, 128 for p4, 168 for p3) with at most small spills. Measured on the
// H100 at M = 1: the long batches win (sr16 p3 on 4096->12288 and 4096->22016), shorter ones
// and more warps lose; sr8 also serves group size 64, sr4 group size 32; mb2 for M = 2, 3.
// The last four carry the trend further (sr16 at fewer warps, wider or narrower columns, M = 2).
constexpr int kStream[][6] = {
    {128, 4, 128, 1, 16, 3}, {128, 4, 128, 1, 8, 4},  {128, 4, 128, 1, 8, 6},
    {128, 8, 128, 1, 8, 3},  {128, 4, 128, 1, 4, 6},  {128, 4, 128, 2, 8, 3},
    {128, 4, 128, 2, 4, 4},  {128, 4, 128, 1, 16, 2}, {128, 8, 128, 1, 16, 2},
    {128, 2, 64, 1, 16, 4},  {128, 4, 128, 2, 16, 2},
};
// The M = 1 stream-K layouts again with batches of several whole groups {bt, cpt, lw, sr, p}, so
// that small groups (g32, g64) stream as long batches as g128 does (sg 2 and 4 where legal).
constexpr int kStreamGroups[][5] = {
    {128, 2, 64, 16, 4}, {128, 4, 128, 16, 3}, {128, 4, 128, 16, 2}, {128, 4, 128, 8, 4}};
// Tile layouts {bt, cpt, sr, p, tc} (q4_tile.cuh): blocks of bt threads, p of them per SM by
// the launch bound (bt * p threads at most 2048; the register cap follows). Measured on the H100
// at M = 1 with the biased dequantize (tc 2): bt256 p3 wins 4096->12288 and 4096->22016, bt512
// p1 4096->4096, bt1024 p1 11008->4096; the others carry the trend (more or fewer warps, 16-
// column tiles, shorter or longer batches), and two layouts try the exact dequantize (tc 1).
constexpr int kTile[][5] = {
    {256, 4, 16, 3, 2},  {256, 4, 16, 4, 2}, {512, 4, 16, 1, 2}, {512, 4, 16, 2, 2},
    {1024, 4, 16, 1, 2}, {256, 4, 32, 3, 2}, {128, 4, 16, 4, 2}, {512, 2, 16, 2, 2},
    {256, 2, 16, 4, 2},  {256, 4, 8, 4, 2},  {256, 4, 16, 3, 1}, {512, 4, 16, 1, 1},
};
// The winning tile layouts again with batches of several whole groups {bt, cpt, sr, p, tc}, for
// g32 and g64 (sg 2 and 4 where legal): per group the biased form adds two mma and a correction,
// so small groups also try the exact dequantize.
constexpr int kTileGroups[][5] = {{256, 4, 16, 3, 2},
                                  {512, 4, 16, 1, 2},
                                  {1024, 4, 16, 1, 2},
                                  {256, 4, 16, 3, 1},
                                  {512, 4, 16, 1, 1}};
// Multi-row tile layouts {bt, cpt, sr, p, tc, mb} (tile_rows in q4_tile.cuh): 8 or 16 x rows per
// pass in the mma's B columns, for M = 2 to 16. Measured on the H100 (g128): mb8 bt512 p1 and
// bt256 p1 win at 8 rows (1.1 to 1.4 times the one-row time), mb16 bt128 p2 sr16 and bt256 p1
// sr16 at 16 (1.5 to 1.7 times; the tensor-core GEMM takes 2.3 to 2.9). Each also with whole
// groups (sg 2, 4) where the batch holds them, so g32 and g64 have them too.
constexpr int kTileRows[][6] = {
    {256, 4, 16, 2, 2, 8},  {256, 4, 16, 1, 2, 8},  {128, 4, 16, 4, 2, 8},  {512, 4, 16, 1, 2, 8},
    {256, 4, 16, 1, 2, 16}, {256, 4, 8, 2, 2, 16},  {128, 4, 16, 2, 2, 16}, {512, 4, 8, 1, 2, 16},
    {256, 4, 8, 2, 1, 16},  {256, 2, 16, 2, 2, 16}, {128, 4, 16, 3, 2, 16}, {128, 4, 16, 2, 1, 16},
    {64, 4, 16, 4, 2, 16},
};
// Layouts on which every strategy is in the space {bt, cpt, lw, ks, p}: the default one block per
// unit and persistent, the narrowest loads with the longest per-thread loop, the single-warp block.
constexpr int kAnchors[][5] = {
    {256, 4, 128, 256, 0}, {256, 4, 128, 256, 4}, {64, 2, 32, 1024, 0}, {32, 8, 128, 512, 0}};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t align_up(int64_t value) {
  return ceil_div(value, 256) * 256;
}

const char* staging_label(XStaging staging) {
  switch (staging) {
    case XStaging::global:
      return "xg";
    case XStaging::shared:
      return "xs";
    case XStaging::pregather:
      return "xp";
  }
  return "x?";
}

// mb * cpt fp32 accumulators per thread, each reused across a pass: more spills or starves
// occupancy (measured: mb8 x cpt8 takes 232 registers).
bool fits_registers(int rows_per_block, int columns) {
  return rows_per_block * columns <= 16;
}

// The stream-K kernel's own rules (mirrors the static_asserts in q4_stream.cuh): a persistent
// grid that fits one wave, no staging, atomics; ks carries no meaning there and stays 256.
bool legal_stream(const Q4MatmulConfig& cfg) {
  const int rows = cfg.stream_rows;
  return (rows == 4 || rows == 8 || rows == 16) && cfg.block_threads >= 64 &&
         cfg.block_threads <= 256 && cfg.load_bits >= 64 && cfg.rows_per_block <= 4 &&
         cfg.blocks_per_sm > 0 && cfg.blocks_per_sm * cfg.block_threads <= 2048 &&
         cfg.k_slice == 256 && cfg.x_staging != XStaging::shared && !cfg.two_pass &&
         (cfg.stream_groups == 1 || cfg.stream_groups == 2 || cfg.stream_groups == 4);
}

// x rows per pass of the tile kernel: 1, 8 or 16 (min_rows); the block's partials, warps x
// mb x tile columns fp32, within static shared memory.
bool legal_tile_rows(const Q4MatmulConfig& cfg, int64_t M) {
  const int rows = cfg.rows_per_block;
  if (rows == 1) return true;
  const int64_t partial_bytes =
      int64_t(cfg.block_threads / 32) * rows * 8 * cfg.columns_per_thread * 4;
  return (rows == 8 || rows == 16) && M >= min_rows(cfg) && partial_bytes <= 48 * 1024;
}

// The tile kernel's rules (mirrors the static_asserts in q4_tile.cuh): mma.sync, whole warps,
// 2 or 4 columns per lane in one load, the launch bound within the SM's 2048 threads, x from
// global or pregathered, fp32, mb 1, 8 or 16 (legal_tile_rows); ks and the reduction flag carry
// no meaning and stay at their defaults.
bool legal_tile(const Q4MatmulConfig& cfg, const DeviceInfo& device, int64_t M) {
  const int rows = cfg.stream_rows;
  const int columns = cfg.columns_per_thread;
  return device.sm() >= 80 && (cfg.tensor_dots == 1 || cfg.tensor_dots == 2) &&
         (rows == 4 || rows == 8 || rows == 16 || rows == 32) && cfg.block_threads >= 64 &&
         cfg.block_threads <= 1024 && (columns == 2 || columns == 4) &&
         cfg.load_bits == 32 * columns && legal_tile_rows(cfg, M) && cfg.blocks_per_sm >= 1 &&
         cfg.blocks_per_sm <= 4 && cfg.blocks_per_sm * cfg.block_threads <= 2048 &&
         cfg.k_slice == 256 && cfg.x_staging != XStaging::shared && !cfg.half_accumulate &&
         !cfg.two_pass &&
         (cfg.stream_groups == 1 || cfg.stream_groups == 2 || cfg.stream_groups == 4);
}

}  // namespace

bool batches_fit_groups(const Q4MatmulConfig& cfg, int group_size) {
  const int group_rows = group_size / 8;
  if (cfg.stream_groups == 1) return group_rows % cfg.stream_rows == 0;
  return group_rows * cfg.stream_groups == cfg.stream_rows && group_rows % 4 == 0;
}

std::vector<TuningParameter> q4_matmul_parameters() {
  return {
      {"bt",
       {32, 64, 128, 256, 512, 1024},
       "threads per block (whole warps); 32 on anchor layouts only, 512 and 1024 tile only"},
      {"cpt", {2, 4, 8}, "output columns per thread; a block covers 32 * cpt columns"},
      {"lw", {32, 64, 128}, "weight load width in bits; lw / 32 <= cpt"},
      {"ks", {256, 512, 1024}, "rows of K per block; split-K factor ceil(K / ks)"},
      {"mb",
       {1, 2, 4, 8, 16},
       "rows of x per pass; mb * cpt <= 16; mb < 2 * M; tile: 1, or 8 and 16 in the mma's B "
       "columns (from M = 2 and 9)"},
      {"x", {0, 1, 2}, "xg: global, xs: staged in shared memory, xp: separate gather (act-order)"},
      {"acc", {0, 1}, "f32 or h2 running sums"},
      {"red", {0, 1}, "split-K by atomics (at) or deterministic two-pass (tp)"},
      {"p",
       {0, 1, 2, 3, 4, 6, 8},
       "0: a block per (tile, K-split) unit; else persistent, SMs x p blocks (tile: the launch "
       "bound's blocks per SM)"},
      {"sr",
       {0, 4, 8, 16, 32},
       "0: block kernel; else stream-K warps (p > 0, xg/xp, at) or tile blocks (tc > 0), sr "
       "packed rows per batch; sr divides group_size / 8; 32 tile only"},
      {"sg",
       {1, 2, 4},
       "stream-K and tile: groups per batch; > 1: a batch is exactly sg whole groups (g32, g64)"},
      {"tc",
       {0, 1, 2},
       "0: fp16 FMA dots; 1, 2: the tile kernel, tensor-core dots (1 exact dequantize, 2 biased "
       "words corrected in fp32); sm_80+"},
  };
}

int64_t min_rows(const Q4MatmulConfig& cfg) {
  if (cfg.tensor_dots == 0) return cfg.rows_per_block / 2 + 1;
  return cfg.rows_per_block == 16 ? 9 : (cfg.rows_per_block == 8 ? 2 : 1);
}

bool legal(const Q4MatmulConfig& cfg, const DeviceInfo& device, const Q4MatmulShape& shape) {
  if (shape.M <= 0 || shape.K <= 0 || shape.N <= 0) return false;
  if (shape.K % 8 != 0 || shape.N % 8 != 0) return false;
  if (shape.group_size <= 0 || shape.group_size % 8 != 0 || shape.K % shape.group_size != 0)
    return false;
  if (cfg.block_threads > device.max_threads_per_block && device.max_threads_per_block > 0)
    return false;
  if (cfg.load_bits / 32 > cfg.columns_per_thread) return false;
  if (cfg.x_staging == XStaging::pregather && !shape.act_order) return false;
  if (cfg.tensor_dots > 0)
    return legal_tile(cfg, device, shape.M) && batches_fit_groups(cfg, shape.group_size);
  if (!fits_registers(cfg.rows_per_block, cfg.columns_per_thread)) return false;
  if (cfg.rows_per_block >= 2 * shape.M) return false;  // a pass mostly of padding rows
  if (cfg.stream_rows == 0) return cfg.stream_groups == 1 && cfg.block_threads <= 256;
  return legal_stream(cfg) && batches_fit_groups(cfg, shape.group_size);
}

std::vector<Q4MatmulConfig> q4_matmul_configs() {
  std::vector<Q4MatmulConfig> configs = {Q4MatmulConfig{}};
  std::set<std::string> seen = {to_string(configs.front())};
  auto add = [&](const Q4MatmulConfig& cfg) {
    if ((cfg.tensor_dots > 0 || fits_registers(cfg.rows_per_block, cfg.columns_per_thread)) &&
        seen.insert(to_string(cfg)).second) {
      configs.push_back(cfg);
    }
  };
  const Q4MatmulConfig strategy;  // xs, f32, at
  for (int rows : kRowsPerBlock) {
    for (int threads : kLayoutThreads) {
      for (const auto& [columns, bits] : kColumnLoads) {
        for (int slice : kSlices) {
          add({threads, columns, bits, slice, rows, strategy.x_staging, false, false, 0});
        }
      }
    }
  }
  for (const auto& [threads, columns, bits, slice, rows, blocks] : kPersistent) {
    add({threads, columns, bits, slice, rows, strategy.x_staging, false, false, blocks});
  }
  for (const auto& [threads, columns, bits, rows, batch, blocks] : kStream) {
    for (XStaging staging : {XStaging::global, XStaging::pregather}) {
      Q4MatmulConfig cfg{threads, columns, bits, 256, rows, staging, false, false, blocks};
      cfg.stream_rows = batch;
      add(cfg);
    }
  }
  for (const auto& [threads, columns, bits, batch, blocks] : kStreamGroups) {
    for (int groups : {2, 4}) {
      if (batch / groups < 4) continue;  // groups of 2 rows would split a dot chain
      Q4MatmulConfig cfg{threads, columns, bits, 256, 1, XStaging::global, false, false, blocks};
      cfg.stream_rows = batch;
      cfg.stream_groups = groups;
      add(cfg);
    }
  }
  for (const auto& [threads, columns, batch, blocks, dots] : kTile) {
    for (XStaging staging : {XStaging::global, XStaging::pregather}) {
      Q4MatmulConfig cfg{threads, columns, 32 * columns, 256, 1, staging, false, false, blocks};
      cfg.stream_rows = batch;
      cfg.tensor_dots = dots;
      add(cfg);
    }
  }
  for (const auto& [threads, columns, batch, blocks, dots] : kTileGroups) {
    for (int groups : {2, 4}) {
      Q4MatmulConfig cfg{threads,          columns, 32 * columns, 256,   1,
                         XStaging::global, false,   false,        blocks};
      cfg.stream_rows = batch;
      cfg.stream_groups = groups;
      cfg.tensor_dots = dots;
      add(cfg);
    }
  }
  for (const auto& [threads, columns, batch, blocks, dots, rows] : kTileRows) {
    for (int groups : {1, 2, 4}) {
      if (batch / groups < 4) continue;  // groups of 2 rows would split a dot chain
      for (XStaging staging : {XStaging::global, XStaging::pregather}) {
        if (groups > 1 && staging == XStaging::pregather) continue;  // act-order g32: rare
        Q4MatmulConfig cfg{threads, columns, 32 * columns, 256,   rows,
                           staging, false,   false,        blocks};
        cfg.stream_rows = batch;
        cfg.stream_groups = groups;
        cfg.tensor_dots = dots;
        add(cfg);
      }
    }
  }
  for (const auto& [threads, columns, bits, slice, blocks] : kAnchors) {
    // mb 1 and the largest mb of 2 or 4 the registers allow; persistent anchors at mb 1 only
    // (their register cap leaves no room for more rows).
    const int widest = blocks > 0 ? 1 : (fits_registers(4, columns) ? 4 : 2);
    for (int rows : {1, widest}) {
      for (XStaging staging : {XStaging::shared, XStaging::global, XStaging::pregather}) {
        for (bool half : {false, true}) {
          for (bool two_pass : {false, true}) {
            add({threads, columns, bits, slice, rows, staging, half, two_pass, blocks});
          }
        }
      }
    }
  }
  return configs;
}

std::vector<Q4MatmulConfig> space(const DeviceInfo& device, const Q4MatmulShape& shape) {
  std::vector<Q4MatmulConfig> legal_configs;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (legal(cfg, device, shape)) legal_configs.push_back(cfg);
  }
  return legal_configs;
}

Q4MatmulGeometry geometry(const Q4MatmulConfig& cfg, const Q4MatmulShape& shape, int sm_count) {
  Q4MatmulGeometry result;
  const int64_t tiles = ceil_div(shape.N, 32 * cfg.columns_per_thread);
  const int64_t splits = ceil_div(shape.K, cfg.k_slice);
  if (cfg.tensor_dots > 0) {
    result.grid_x = static_cast<unsigned>(ceil_div(shape.N, 8 * cfg.columns_per_thread));
  } else if (cfg.stream_rows > 0) {
    // Any grid is correct; more warps than batches of sr rows would only idle.
    const int64_t batches = ceil_div(tiles * (shape.K / 8), cfg.stream_rows);
    const int64_t blocks = ceil_div(batches, cfg.block_threads / 32);
    result.grid_x = static_cast<unsigned>(
        sm_count > 0 ? std::min<int64_t>(blocks, int64_t(sm_count) * cfg.blocks_per_sm) : blocks);
  } else if (cfg.blocks_per_sm > 0) {
    const int64_t units = tiles * splits;
    result.grid_x = static_cast<unsigned>(
        sm_count > 0 ? std::min<int64_t>(units, int64_t(sm_count) * cfg.blocks_per_sm) : units);
  } else {
    result.grid_x = static_cast<unsigned>(tiles);
    result.grid_y = static_cast<unsigned>(splits);
  }
  result.block_x = static_cast<unsigned>(cfg.block_threads);
  if (cfg.x_staging == XStaging::pregather)
    result.gather_grid_x = static_cast<unsigned>(ceil_div(shape.K, 256));
  return result;
}

Q4MatmulWorkspace workspace(const Q4MatmulConfig& cfg, const Q4MatmulShape& shape) {
  const int64_t tiles = ceil_div(shape.N, 32 * cfg.columns_per_thread);
  const int64_t splits = ceil_div(shape.K, cfg.k_slice);
  Q4MatmulWorkspace result;
  int64_t reduction_bytes = 0, counter_bytes = 0;
  // Stream-K: the grid decides the splits; the tile kernel never leaves its block.
  if (cfg.tensor_dots == 0 && (splits > 1 || cfg.stream_rows > 0)) {
    reduction_bytes = (cfg.two_pass ? splits : 1) * shape.M * shape.N * 4;
    counter_bytes = tiles * 4;
  }
  result.reduction_offset = 0;
  result.counters_offset = align_up(reduction_bytes);
  result.zeroed_bytes = result.counters_offset + align_up(counter_bytes);
  result.gathered_offset = result.zeroed_bytes;
  const int64_t gathered_bytes = cfg.x_staging == XStaging::pregather ? shape.M * shape.K * 2 : 0;
  result.bytes = result.gathered_offset + align_up(gathered_bytes);
  return result;
}

std::string name_expression(const Q4MatmulConfig& cfg) {
  auto flag = [](bool value) { return value ? "true" : "false"; };
  if (cfg.tensor_dots > 0) {
    return "q4_tile_kernel<" + std::to_string(cfg.block_threads) + ", " +
           std::to_string(cfg.columns_per_thread) + ", " + std::to_string(cfg.stream_rows) + ", " +
           std::to_string(cfg.stream_groups) + ", " + flag(cfg.tensor_dots == 2) + ", " +
           std::to_string(cfg.blocks_per_sm) +
           (cfg.rows_per_block > 1 ? ", " + std::to_string(cfg.rows_per_block) : "") + ">";
  }
  if (cfg.stream_rows > 0) {
    return "q4_stream_kernel<" + std::to_string(cfg.block_threads) + ", " +
           std::to_string(cfg.columns_per_thread) + ", " + std::to_string(cfg.load_bits) + ", " +
           std::to_string(cfg.rows_per_block) + ", " + flag(cfg.half_accumulate) + ", " +
           std::to_string(cfg.stream_rows) + ", " + std::to_string(cfg.blocks_per_sm) +
           (cfg.stream_groups > 1 ? ", " + std::to_string(cfg.stream_groups) : "") + ">";
  }
  return "q4_matmul_kernel<" + std::to_string(cfg.block_threads) + ", " +
         std::to_string(cfg.columns_per_thread) + ", " + std::to_string(cfg.load_bits) + ", " +
         std::to_string(cfg.k_slice) + ", " + std::to_string(cfg.rows_per_block) + ", " +
         flag(cfg.x_staging != XStaging::global) + ", " + flag(cfg.half_accumulate) + ", " +
         flag(cfg.two_pass) + ", " + std::to_string(cfg.blocks_per_sm) + ">";
}

bool fusable(const Q4MatmulConfig& cfg) {
  return cfg.stream_rows > 0 && (cfg.tensor_dots == 0 || cfg.rows_per_block == 1);
}

std::string fused_name_expression(const Q4MatmulConfig& cfg, const Q4Fusion& fusion) {
  Q4JIT_CHECK(fusable(cfg),
              to_string(cfg) + ": only stream-K and tile configurations have fused kernels");
  const std::string inputs =
      std::to_string(int(fusion.input)) + ", " + (fusion.residual ? "true" : "false");
  if (cfg.tensor_dots > 0) {  // the tile kernel's parameters, then the fusion's
    const std::string plain = name_expression(cfg);
    return "q4_tile_fused_kernel<" +
           plain.substr(plain.find('<') + 1, plain.size() - plain.find('<') - 2) + ", " + inputs +
           ">";
  }
  Q4MatmulConfig one_group = cfg;  // kChunkGroups comes last in the fused kernel's list
  one_group.stream_groups = 1;
  const std::string plain = name_expression(one_group);  // "q4_stream_kernel<...>"
  return "q4_stream_fused_kernel<" +
         plain.substr(plain.find('<') + 1, plain.size() - plain.find('<') - 2) + ", " + inputs +
         (cfg.stream_groups > 1 ? ", " + std::to_string(cfg.stream_groups) : "") + ">";
}

std::string q4_gather_name_expression() {
  return "q4_gather_kernel";
}

std::string to_string(const Q4MatmulConfig& cfg) {
  return "bt" + std::to_string(cfg.block_threads) + ".cpt" +
         std::to_string(cfg.columns_per_thread) + ".lw" + std::to_string(cfg.load_bits) + ".ks" +
         std::to_string(cfg.k_slice) + ".mb" + std::to_string(cfg.rows_per_block) + "." +
         staging_label(cfg.x_staging) + "." + (cfg.half_accumulate ? "h2" : "f32") + "." +
         (cfg.two_pass ? "tp" : "at") +
         (cfg.blocks_per_sm > 0 ? ".p" + std::to_string(cfg.blocks_per_sm) : "") +
         (cfg.stream_rows > 0 ? ".sr" + std::to_string(cfg.stream_rows) : "") +
         (cfg.stream_groups > 1 ? ".sg" + std::to_string(cfg.stream_groups) : "") +
         (cfg.tensor_dots > 0 ? ".tc" + std::to_string(cfg.tensor_dots) : "");
}

double tolerance(const Q4MatmulConfig& cfg) {
  return cfg.half_accumulate ? 4e-3 : 2e-3;
}

KernelFamily q4_matmul_family() {
  KernelFamily family;
  family.name = "q4_matmul";
  family.source = "q4_matmul.cu";
  family.parameters = q4_matmul_parameters();
  const Q4MatmulConfig defaults;
  family.default_variants = {{to_string(defaults), name_expression(defaults)}};
  std::set<std::string> expressions;  // xp shares its kernel with xs: compile it once
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (expressions.insert(name_expression(cfg)).second) {
      family.all_variants.push_back({to_string(cfg), name_expression(cfg)});
    }
  }
  return family;
}

}  // namespace q4jit
