// The q4_matmul family: its space and descriptor (no GPU), the whole space compiling through
// NVRTC for sm_80 and sm_90 (no GPU; skipped without NVRTC), and on a GPU every configuration
// against the CPU reference (dequantize_gptq + ref::matmul) on fresh random inputs with the
// output poisoned (NaN) before each launch.
//
// GPU coverage, in one sweep (q4jit_kernel_tests --gtest_filter='*Gpu*'):
// - the whole space on the fixture's shapes (512->512, 512->256, 512->1408, 1408->512) for group
//   sizes 32, 128, no-group, act-order on and off, M = 1, 2, 3, 4, 8, 16, 64;
// - the whole space on each Llama-7B shape (4096->12288, 4096->4096, 4096->22016, 11008->4096,
//   4096->11008) for (g128, act-order, M=1), (g32, M=3), (no-group, act-order, M=16);
// - every strategy on the three anchor layouts (q4_matmul.hpp) for every other combination of
//   7B shape, group size, act-order and M, and every stream-K config for those with M <= 16.
// Each config runs twice: after zeroing its workspace, then again on the workspace it left
// (split-K must leave it zero), each output checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "common/half.hpp"
#include "kernel_sources/q4_matmul.hpp"
#include "model/gptq.hpp"
#include "model/ref/cpu_engine.hpp"
#include "runtime/platform.hpp"
#include "tests/kernels/kernel_test_support.hpp"
#include "tuner/q4_matmul_runner.hpp"

namespace q4jit {
namespace {

struct Case {
  int K, N, group_size;  // group_size == K: no-group
  bool act_order;
  int M;
  bool full_space;
};

std::string case_name(const Case& c) {
  return std::to_string(c.K) + "->" + std::to_string(c.N) + " g" +
         (c.group_size == c.K ? std::string("none") : std::to_string(c.group_size)) +
         (c.act_order ? " act" : "") + " M=" + std::to_string(c.M);
}

std::vector<Case> sweep_cases() {
  const int fixture[][2] = {{512, 512}, {512, 256}, {512, 1408}, {1408, 512}};
  const int llama[][2] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}, {4096, 11008}};
  const int rows[] = {1, 2, 3, 4, 8, 16, 64};
  std::vector<Case> cases;
  auto add_all = [&](int K, int N, bool fixture_shape) {
    for (int group : {32, 128, K}) {
      for (bool act : {false, true}) {
        for (int M : rows) {
          const bool full = fixture_shape || (group == 128 && act && M == 1) ||
                            (group == 32 && !act && M == 3) || (group == K && act && M == 16);
          cases.push_back({K, N, group, act, M, full});
        }
      }
    }
  };
  for (const auto& [K, N] : fixture) add_all(K, N, true);
  for (const auto& [K, N] : llama) add_all(K, N, false);
  return cases;
}

bool anchor_layout(const Q4MatmulConfig& cfg, int M) {
  // The stream-K configs: few, and the GEMV winners; at M = 64 (one pass per mb rows over the
  // weights, never chosen there) only in the full-space cases.
  if (cfg.stream_rows > 0) return M <= 16;
  // The layouts of the anchors in q4_matmul.cpp (the persistent one shares the first).
  const int anchors[][4] = {{256, 4, 128, 256}, {64, 2, 32, 1024}, {32, 8, 128, 512}};
  for (const auto& [threads, columns, bits, slice] : anchors) {
    if (cfg.block_threads == threads && cfg.columns_per_thread == columns &&
        cfg.load_bits == bits && cfg.k_slice == slice) {
      return true;
    }
  }
  return false;
}

// A random GPTQ layer in the loaded layout: random nibbles, zeros, positive scales, and for
// act-order a random valid g_idx (each group exactly group_size rows) sorted as the loader does.
GptqLinear random_linear(const Case& c, std::mt19937& rng) {
  GptqLinear linear;
  linear.name = case_name(c);
  linear.K = c.K;
  linear.N = c.N;
  linear.group_size = c.group_size;
  linear.G = c.K / c.group_size;
  linear.act_order = c.act_order;
  linear.sym = false;
  std::uniform_int_distribution<uint32_t> word;
  linear.qweight.resize(size_t(c.K / 8) * c.N);
  for (int32_t& value : linear.qweight) value = static_cast<int32_t>(word(rng));
  linear.qzeros.resize(size_t(linear.G) * (c.N / 8));
  for (int32_t& value : linear.qzeros) value = static_cast<int32_t>(word(rng));
  std::uniform_real_distribution<float> scale(0.5f, 1.5f);
  const float unit = 1.0f / (8.0f * std::sqrt(float(c.K)));
  linear.scales.resize(size_t(linear.G) * c.N);
  for (uint16_t& value : linear.scales) value = float_to_half(scale(rng) * unit);
  if (c.act_order) {
    std::vector<int32_t> order(c.K);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    if (linear.G == 1) {
      linear.x_map = order;  // one group: any sorted order is valid; exercise the gather anyway
    } else {
      std::vector<int32_t> g_idx(c.K);
      for (int k = 0; k < c.K; ++k) g_idx[order[k]] = k / c.group_size;
      linear.x_map = act_order_permutation(g_idx, linear.G);
    }
  }
  return linear;
}

std::vector<uint16_t> random_activations(int M, int K, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<uint16_t> x(size_t(M) * K);
  for (uint16_t& h : x) h = float_to_half(value(rng));
  return x;
}

TEST(Q4MatmulSpace, DefaultFirstNamesUniqueAndModestSize) {
  const std::vector<Q4MatmulConfig> configs = q4_matmul_configs();
  ASSERT_FALSE(configs.empty());
  EXPECT_EQ(to_string(configs.front()), to_string(Q4MatmulConfig{}));
  std::set<std::string> names, expressions;
  for (const Q4MatmulConfig& cfg : configs) {
    EXPECT_TRUE(names.insert(to_string(cfg)).second) << to_string(cfg);
    expressions.insert(name_expression(cfg));
  }
  EXPECT_LE(expressions.size(), 300u) << "distinct instantiations";
  EXPECT_EQ(q4_matmul_family().all_variants.size(), expressions.size());
  EXPECT_EQ(to_string(Q4MatmulConfig{}), "bt256.cpt4.lw128.ks256.mb1.xs.f32.at.p4");
  Q4MatmulConfig one_block_per_unit;
  one_block_per_unit.blocks_per_sm = 0;
  EXPECT_EQ(to_string(one_block_per_unit), "bt256.cpt4.lw128.ks256.mb1.xs.f32.at")
      << "old strings unchanged";
}

TEST(Q4MatmulSpace, LegalityFollowsShape) {
  DeviceInfo device;
  device.max_threads_per_block = 1024;
  const Q4MatmulShape shape{1, 4096, 4096, 128, false};
  EXPECT_TRUE(legal(Q4MatmulConfig{}, device, shape));
  Q4MatmulConfig pregather;
  pregather.x_staging = XStaging::pregather;
  EXPECT_FALSE(legal(pregather, device, shape)) << "xp needs act-order";
  EXPECT_TRUE(legal(pregather, device, {1, 4096, 4096, 128, true}));
  Q4MatmulConfig two_rows;
  two_rows.rows_per_block = 2;
  EXPECT_FALSE(legal(two_rows, device, shape)) << "mb2 at M=1 is half padding";
  EXPECT_FALSE(legal(Q4MatmulConfig{}, device, {1, 4096, 4100, 128, false})) << "N % 8";
  EXPECT_FALSE(legal(Q4MatmulConfig{}, device, {1, 4096, 4096, 100, false})) << "group size";
  for (const Q4MatmulConfig& cfg : space(device, {16, 512, 256, 32, true})) {
    EXPECT_TRUE(legal(cfg, device, {16, 512, 256, 32, true}));
  }
}

TEST(Q4MatmulSpace, WorkspaceCoversSplitsAndGather) {
  const Q4MatmulShape shape{4, 4096, 4096, 128, true};
  Q4MatmulConfig cfg;
  cfg.two_pass = true;
  cfg.x_staging = XStaging::pregather;
  cfg.blocks_per_sm = 0;
  const Q4MatmulWorkspace layout = workspace(cfg, shape);
  EXPECT_EQ(geometry(cfg, shape).grid_y, 16u);
  // Persistent: SMs x p blocks, never more than the 32 tiles x 16 splits; the same workspace.
  Q4MatmulConfig persistent = cfg;
  persistent.blocks_per_sm = 4;
  EXPECT_EQ(geometry(persistent, shape, 100).grid_x, 400u);
  EXPECT_EQ(geometry(persistent, shape, 132).grid_x, 512u);
  EXPECT_EQ(geometry(persistent, shape, 132).grid_y, 1u);
  EXPECT_EQ(workspace(persistent, shape).bytes, layout.bytes);
  EXPECT_GE(layout.counters_offset, 16 * 4 * 4096 * 4);
  EXPECT_GE(layout.bytes - layout.gathered_offset, 4 * 4096 * 2);
  Q4MatmulConfig one_split;
  one_split.k_slice = 1024;
  EXPECT_EQ(workspace(one_split, {1, 1024, 512, 128, false}).bytes, 0);
}

TEST(Q4MatmulSpace, StreamConfigsNamedLegalAndSized) {
  DeviceInfo device;
  device.max_threads_per_block = 1024;
  Q4MatmulConfig stream{128, 4, 128, 256, 1, XStaging::global, false, false, 4};
  stream.stream_rows = 8;
  EXPECT_EQ(to_string(stream), "bt128.cpt4.lw128.ks256.mb1.xg.f32.at.p4.sr8");
  EXPECT_EQ(name_expression(stream), "q4_stream_kernel<128, 4, 128, 1, false, 8, 4>");
  const Q4MatmulShape shape{1, 4096, 12288, 128, false};
  EXPECT_TRUE(legal(stream, device, shape));
  Q4MatmulConfig staged = stream;
  staged.x_staging = XStaging::shared;
  EXPECT_FALSE(legal(staged, device, shape)) << "stream-K stages nothing";
  Q4MatmulConfig two_pass = stream;
  two_pass.two_pass = true;
  EXPECT_FALSE(legal(two_pass, device, shape)) << "stream-K reduces by atomics";
  Q4MatmulConfig one_block_per_unit = stream;
  one_block_per_unit.blocks_per_sm = 0;
  EXPECT_FALSE(legal(one_block_per_unit, device, shape)) << "stream-K needs a persistent grid";
  EXPECT_FALSE(legal(stream, device, {1, 4096, 12288, 32, false})) << "8 rows span two g32 groups";
  EXPECT_FALSE(legal(stream, device, {1, 4104, 12288, 4104, false})) << "no-group, K / 8 odd";
  Q4MatmulConfig short_batches = stream;
  short_batches.stream_rows = 4;
  EXPECT_TRUE(legal(short_batches, device, {1, 4096, 12288, 32, false}));
  // 96 tiles x 512 packed rows in batches of 8 over 4 warps per block: 1536 blocks at most,
  // SMs x p when fewer; the workspace always holds the fp32 sums and the tile counters.
  EXPECT_EQ(geometry(stream, shape).grid_x, 1536u);
  EXPECT_EQ(geometry(stream, shape, 132).grid_x, 528u);
  EXPECT_EQ(geometry(stream, {1, 512, 256, 128, false}, 132).grid_x, 4u);
  const Q4MatmulWorkspace layout = workspace(stream, shape);
  EXPECT_GE(layout.counters_offset, 12288 * 4);
  EXPECT_GE(layout.zeroed_bytes, layout.counters_offset + 96 * 4);
  // Batches of whole groups: sr16.sg4 is four g32 groups, sr16.sg2 two g64 ones, never g128's
  // or g16's (a 2-row group splits a dot chain).
  Q4MatmulConfig grouped = stream;
  grouped.stream_rows = 16;
  grouped.stream_groups = 4;
  EXPECT_EQ(to_string(grouped), "bt128.cpt4.lw128.ks256.mb1.xg.f32.at.p4.sr16.sg4");
  EXPECT_TRUE(legal(grouped, device, {1, 4096, 12288, 32, false}));
  EXPECT_FALSE(legal(grouped, device, {1, 4096, 12288, 64, false}));
  EXPECT_FALSE(legal(grouped, device, shape));
  grouped.stream_groups = 2;
  EXPECT_TRUE(legal(grouped, device, {1, 4096, 12288, 64, false}));
  EXPECT_FALSE(legal(grouped, device, {1, 4096, 12288, 32, false}));
  grouped.stream_rows = 4;
  EXPECT_FALSE(legal(grouped, device, {1, 4096, 12288, 16, false})) << "2-row groups";
  int stream_configs = 0, grouped_configs = 0;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (cfg.stream_rows == 0 || cfg.tensor_dots > 0) continue;
    if (cfg.stream_groups > 1) {
      ++grouped_configs;
      const int group_size = cfg.stream_rows / cfg.stream_groups * 8;
      EXPECT_TRUE(legal(cfg, device, {1, 4096, 4096, group_size, true})) << to_string(cfg);
      continue;
    }
    ++stream_configs;
    EXPECT_TRUE(legal(cfg, device, {8, 4096, 4096, 128, true})) << to_string(cfg);
  }
  EXPECT_GE(stream_configs, 4);
  EXPECT_GE(grouped_configs, 4);
}

TEST(Q4MatmulSpace, TileConfigsNamedLegalAndSized) {
  DeviceInfo ampere;
  ampere.cc_major = 8;
  ampere.max_threads_per_block = 1024;
  DeviceInfo turing = ampere;
  turing.cc_major = 7;
  turing.cc_minor = 5;
  Q4MatmulConfig tile{256, 4, 128, 256, 1, XStaging::global, false, false, 3};
  tile.stream_rows = 16;
  tile.tensor_dots = 2;
  EXPECT_EQ(to_string(tile), "bt256.cpt4.lw128.ks256.mb1.xg.f32.at.p3.sr16.tc2");
  EXPECT_EQ(name_expression(tile), "q4_tile_kernel<256, 4, 16, 1, true, 3>");
  EXPECT_EQ(fused_name_expression(tile, {Q4FusedInput::norm, false}),
            "q4_tile_fused_kernel<256, 4, 16, 1, true, 3, 1, false>");
  EXPECT_TRUE(fusable(tile));
  const Q4MatmulShape shape{1, 4096, 12288, 128, true};
  EXPECT_TRUE(legal(tile, ampere, shape));
  EXPECT_FALSE(legal(tile, turing, shape)) << "mma.sync m16n8k16 needs sm_80";
  EXPECT_TRUE(legal(tile, ampere, {5, 4096, 12288, 128, false})) << "more rows run as passes";
  EXPECT_FALSE(legal(tile, ampere, {1, 4096, 12288, 64, false})) << "16 rows span two g64 groups";
  // One block per tile of 8 * cpt columns; nothing leaves the block, so no workspace.
  EXPECT_EQ(geometry(tile, shape, 132).grid_x, 12288u / 32);
  EXPECT_EQ(geometry(tile, {1, 4096, 4104, 4096, false}, 132).grid_x, 129u) << "partial tile";
  EXPECT_EQ(geometry(tile, shape, 132).block_x, 256u);
  EXPECT_EQ(workspace(tile, shape).bytes, 0);
  Q4MatmulConfig pregather = tile;
  pregather.x_staging = XStaging::pregather;
  EXPECT_GE(workspace(pregather, shape).bytes, 4096 * 2) << "xp: the gathered row";
  EXPECT_EQ(workspace(pregather, shape).zeroed_bytes, 0);
  Q4MatmulConfig exact = tile;
  exact.tensor_dots = 1;
  EXPECT_EQ(name_expression(exact), "q4_tile_kernel<256, 4, 16, 1, false, 3>");
  // Each rule of legal_tile.
  auto illegal = [&](auto change, const char* why) {
    Q4MatmulConfig cfg = tile;
    change(cfg);
    EXPECT_FALSE(legal(cfg, ampere, shape)) << why;
  };
  illegal([](Q4MatmulConfig& c) { c.columns_per_thread = 8; }, "2 or 4 columns per lane");
  illegal([](Q4MatmulConfig& c) { c.load_bits = 64; }, "one load holds the lane's columns");
  illegal([](Q4MatmulConfig& c) { c.rows_per_block = 2; }, "mb 1, 8 or 16");
  illegal([](Q4MatmulConfig& c) { c.blocks_per_sm = 0; }, "p is the launch bound, 1 to 4");
  illegal(
      [](Q4MatmulConfig& c) {
        c.blocks_per_sm = 4;
        c.block_threads = 1024;
      },
      "2048 threads");
  illegal([](Q4MatmulConfig& c) { c.x_staging = XStaging::shared; }, "nothing staged");
  illegal([](Q4MatmulConfig& c) { c.half_accumulate = true; }, "fp32 sums only");
  illegal([](Q4MatmulConfig& c) { c.two_pass = true; }, "no split-K reduction");
  illegal([](Q4MatmulConfig& c) { c.tensor_dots = 3; }, "tc 1 or 2");
  illegal([](Q4MatmulConfig& c) { c.stream_rows = 2; }, "whole 4-row sets");
  Q4MatmulConfig long_stream{128, 4, 128, 256, 1, XStaging::global, false, false, 4};
  long_stream.stream_rows = 32;
  EXPECT_FALSE(legal(long_stream, ampere, shape)) << "sr32 is the tile kernel's";
  Q4MatmulConfig wide_block = long_stream;
  wide_block.stream_rows = 0;
  wide_block.block_threads = 512;
  EXPECT_FALSE(legal(wide_block, ampere, shape)) << "512 threads is the tile kernel's";
  // The space's tile configs: every one legal on its groups (at 16 rows for the multi-row
  // ones), with whole-group batches for g32.
  int tiles = 0, grouped = 0, multi_row = 0;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (cfg.tensor_dots == 0) continue;
    ++tiles;
    const int group_size = cfg.stream_rows / cfg.stream_groups * 8;
    grouped += cfg.stream_groups > 1;
    multi_row += cfg.rows_per_block > 1;
    const int64_t M = cfg.rows_per_block > 1 ? 16 : 1;
    EXPECT_TRUE(legal(cfg, ampere, {M, 4096, 4096, group_size, cfg.x_staging != XStaging::global}))
        << to_string(cfg);
  }
  EXPECT_GE(tiles, 12);
  EXPECT_GE(grouped, 4);
  EXPECT_GE(multi_row, 10);
}

// The multi-row tile configs (mb 8 and 16: x rows in the mma's B columns): named with mb last,
// legal from 2 (mb 8) and 9 (mb 16) rows, their partials within static shared memory, one-row
// fused forms only.
TEST(Q4MatmulSpace, MultiRowTileConfigs) {
  DeviceInfo ampere;
  ampere.cc_major = 8;
  ampere.max_threads_per_block = 1024;
  Q4MatmulConfig rows{256, 4, 128, 256, 16, XStaging::global, false, false, 2};
  rows.stream_rows = 8;
  rows.tensor_dots = 2;
  EXPECT_EQ(to_string(rows), "bt256.cpt4.lw128.ks256.mb16.xg.f32.at.p2.sr8.tc2");
  EXPECT_EQ(name_expression(rows), "q4_tile_kernel<256, 4, 8, 1, true, 2, 16>");
  EXPECT_FALSE(fusable(rows)) << "the fused kernels take one row";
  EXPECT_TRUE(legal(rows, ampere, {16, 4096, 12288, 128, false}));
  EXPECT_TRUE(legal(rows, ampere, {64, 4096, 12288, 128, true})) << "more rows run as passes";
  EXPECT_TRUE(legal(rows, ampere, {9, 4096, 12288, 128, false}));
  EXPECT_FALSE(legal(rows, ampere, {8, 4096, 12288, 128, false})) << "8 rows: mb 8";
  Q4MatmulConfig eight = rows;
  eight.rows_per_block = 8;
  EXPECT_EQ(name_expression(eight), "q4_tile_kernel<256, 4, 8, 1, true, 2, 8>");
  EXPECT_TRUE(legal(eight, ampere, {2, 4096, 12288, 128, false}));
  EXPECT_FALSE(legal(eight, ampere, {1, 4096, 12288, 128, false})) << "one row: mb 1";
  Q4MatmulConfig wide = rows;  // 32 warps x 16 rows x 32 columns x 4 bytes = 64 KiB
  wide.block_threads = 1024;
  wide.blocks_per_sm = 1;
  EXPECT_FALSE(legal(wide, ampere, {16, 4096, 12288, 128, false})) << "partials beyond 48 KiB";
  wide.block_threads = 512;  // 32 KiB
  EXPECT_TRUE(legal(wide, ampere, {16, 4096, 12288, 128, false}));
  EXPECT_EQ(geometry(rows, {16, 4096, 12288, 128, false}, 132).grid_x, 12288u / 32);
  EXPECT_EQ(workspace(rows, {16, 4096, 12288, 128, false}).bytes, 0);
}

// CI's proof that the whole space compiles for sm_80 and sm_90 (no GPU needed).
TEST(Q4MatmulCompile, WholeSpaceForSm80AndSm90) {
  auto compiler = open_compiler();
  if (!compiler) GTEST_SKIP() << "no NVRTC: " << compiler.error().what();
  KernelService service(*compiler.value(), nullptr);
  std::vector<CompileRequest> requests;
  for (int sm : {80, 90}) {
    for (CompileRequest& request : q4_matmul_requests(q4_matmul_configs(), {sm, false}, 8)) {
      requests.push_back(std::move(request));
    }
  }
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  const auto started = std::chrono::steady_clock::now();
  const std::vector<Result<CompiledKernel>> results = service.get_all(requests, jobs);
  int failed = 0;
  for (const Result<CompiledKernel>& result : results) {
    if (!result) {
      ++failed;
      ADD_FAILURE() << result.error().describe();
    }
  }
  std::printf(
      "q4_matmul: %zu programs (%zu kernels per arch) compiled for sm_80, sm_90 in %.1f s on %d "
      "jobs, %d failed\n",
      requests.size(), q4_matmul_family().all_variants.size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), jobs,
      failed);
}

// --- GPU

struct DeviceLayer {
  DeviceBuffer qweight, scales, qzeros, x_map;
};

// Device 0 and NVRTC, or a skip with the printed reason (shared with the other kernel suites).
class Q4MatmulGpu : public test::GpuTest {};

struct SweepTally {
  int64_t launches = 0, failures = 0;
  double worst_f32 = 0, worst_h2 = 0;
};

double relative_error(const std::vector<uint16_t>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(half_to_float(got[i])) - want[i];
    diff += d * d;
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(diff / norm);
}

std::string first_mismatches(const std::vector<uint16_t>& got, const std::vector<float>& want,
                             int N) {
  std::string text;
  int shown = 0;
  for (size_t i = 0; i < want.size() && shown < 5; ++i) {
    const float value = half_to_float(got[i]);
    if (!(std::fabs(value - want[i]) <= 1e-2f * (std::fabs(want[i]) + 0.05f))) {
      char line[120];
      std::snprintf(line, sizeof line, " [m=%zu n=%zu] got %g want %g;", i / N, i % N, value,
                    want[i]);
      text += line;
      ++shown;
    }
  }
  return text;
}

// Q4JIT_SWEEP_ONLY=<substring>: sweep only the configs whose string contains it (a quick check
// of new configs on the GPU machine; the proof is the unfiltered run).
std::vector<Q4MatmulConfig> swept_configs() {
  const char* only = std::getenv("Q4JIT_SWEEP_ONLY");
  std::vector<Q4MatmulConfig> configs;
  for (const Q4MatmulConfig& cfg : q4_matmul_configs()) {
    if (only == nullptr || to_string(cfg).find(only) != std::string::npos) configs.push_back(cfg);
  }
  return configs;
}

TEST_F(Q4MatmulGpu, EveryConfigMatchesReference) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<Q4MatmulConfig> all = swept_configs();
  KernelService service(*compiler_, nullptr);
  const int jobs = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Result<Q4MatmulKernel>> loaded = load_q4_matmul(*backend_, service, all, jobs);
  const double compile_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::vector<Q4MatmulKernel> kernels;
  for (Result<Q4MatmulKernel>& kernel : loaded) {
    if (!kernel) {
      ADD_FAILURE() << kernel.error().describe();
    } else {
      kernels.push_back(kernel.value());
    }
  }
  const DeviceInfo& device = backend_->current_device();
  std::mt19937 rng(20240611);
  SweepTally tally;
  const std::vector<Case> cases = sweep_cases();
  for (const Case& c : cases) {
    const GptqLinear linear = random_linear(c, rng);
    const std::vector<uint16_t> x = random_activations(c.M, c.K, rng);
    std::vector<float> x_float(x.size());
    for (size_t i = 0; i < x.size(); ++i) x_float[i] = half_to_float(x[i]);
    std::vector<float> want(size_t(c.M) * c.N);
    ref::matmul(x_float.data(), dequantize_gptq(linear).data(), want.data(), c.M, c.K, c.N);

    const Q4MatmulShape shape{c.M, c.K, c.N, c.group_size, c.act_order};
    std::vector<const Q4MatmulKernel*> chosen;
    int64_t workspace_bytes = 16;
    for (const Q4MatmulKernel& kernel : kernels) {
      if (!legal(kernel.config, device, shape) ||
          !(c.full_space || anchor_layout(kernel.config, c.M)))
        continue;
      chosen.push_back(&kernel);
      workspace_bytes = std::max(workspace_bytes, workspace(kernel.config, shape).bytes);
    }
    DeviceBuffer qweight = upload(linear.qweight), scales = upload(linear.scales),
                 qzeros = upload(linear.qzeros), x_map = upload(linear.x_map), x_device = upload(x);
    DeviceBuffer out = backend_->allocate(want.size() * 2);
    DeviceBuffer scratch = backend_->allocate(static_cast<size_t>(workspace_bytes));
    const Q4MatmulOperands operands{out.raw(),    x_device.raw(), x_map.raw(),  qweight.raw(),
                                    scales.raw(), qzeros.raw(),   scratch.raw()};
    std::vector<uint16_t> got(want.size());
    for (const Q4MatmulKernel* kernel : chosen) {
      const Q4MatmulWorkspace layout = workspace(kernel->config, shape);
      if (layout.zeroed_bytes > 0)
        backend_->memset(scratch.raw(), 0, static_cast<size_t>(layout.zeroed_bytes), {});
      for (int run = 0; run < 2; ++run) {
        backend_->memset(out.raw(), 0xff, want.size() * 2, {});  // fp16 NaN everywhere
        launch_q4_matmul(*backend_, *kernel, shape, operands, {});
        backend_->copy_to_host(got.data(), out.raw(), got.size() * 2, {});
        backend_->synchronize({});
        const double error = relative_error(got, want);
        ++tally.launches;
        double& worst = kernel->config.half_accumulate ? tally.worst_h2 : tally.worst_f32;
        worst = std::max(worst, std::isnan(error) ? INFINITY : error);
        if (!(error <= tolerance(kernel->config))) {
          ++tally.failures;
          ADD_FAILURE() << to_string(kernel->config) << " on " << case_name(c) << " (run "
                        << run + 1 << "): relative error " << error << " > "
                        << tolerance(kernel->config) << ";" << first_mismatches(got, want, c.N);
        }
      }
    }
  }
  std::printf(
      "q4_matmul GPU sweep on %s: %zu cases, %zu configs (compiled and loaded in %.1f s), "
      "%lld launches, %lld failures, worst relative error f32 %.2e, h2 %.2e, %.1f s\n",
      device.name.c_str(), cases.size(), kernels.size(), compile_seconds,
      static_cast<long long>(tally.launches), static_cast<long long>(tally.failures),
      tally.worst_f32, tally.worst_h2,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

}  // namespace
}  // namespace q4jit
