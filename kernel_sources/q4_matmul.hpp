// Host descriptor of the q4_matmul family (kernels in q4_matmul.cu): GEMV to small GEMM over the
// GPTQ layout. Its tuning parameters in one place, legality, the tuning space, launch geometry,
// the workspace a launch needs and the name expressions that instantiate the templates.
// Not here: compiling, loading and launching (tuner/q4_matmul_runner.hpp), the tensor-core path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct Q4MatmulShape {
  int64_t M = 1;           // rows of x (tokens)
  int64_t K = 0;           // in_features; multiple of 8
  int64_t N = 0;           // out_features; multiple of 8
  int64_t group_size = 0;  // rows per group: a multiple of 8 dividing K (K for no-group)
  bool act_order = false;  // rows sorted by group at load; x is gathered through x_map
};

// How the activation (and x_map) reach the threads.
enum class XStaging {
  global,     // "xg": each thread reads x (through x_map) from global memory as it goes
  shared,     // "xs": the block stages its K-slice of x in shared memory first, gathering
              //       through x_map while staging when act-order
  pregather,  // "xp": q4_gather_kernel writes x in sorted order first, then the xs kernel runs
              //       on it with no x_map (act-order only)
};

// Parameters change speed, never results beyond the stated tolerance: fp16 dots over at most 4
// packed words (16 products) of one group, then fp32 sums in any order (relative error <= 2e-3
// against the fp32 reference; measured 6.6e-4 on the 7B shapes), or, with half_accumulate, fp16
// running sums per thread (<= 4e-3: each thread's sum over its share of the K-slice is rounded
// to fp16).
struct Q4MatmulConfig {
  int block_threads = 256;     // bt: 32, 64, 128, 256 threads; warps split the K-slice
  int columns_per_thread = 4;  // cpt: 2, 4, 8 output columns; a block covers 32 * cpt
  int load_bits = 128;         // lw: 32, 64, 128-bit weight loads; lw / 32 <= cpt
  int k_slice = 256;           // ks: 256, 512, 1024 rows of K per block (split-K factor is
                               //     ceil(K / ks)); need not align with groups
  int rows_per_block = 1;      // mb: 1, 2, 4, 8 rows of x per pass over the weights;
                               //     mb * cpt <= 16 (accumulator registers); tile kernel: 1,
                               //     or 8, 16 rows in the mma's B columns (M >= 2, M >= 9)
  XStaging x_staging = XStaging::shared;  // xg, xs, xp (see XStaging)
  bool half_accumulate = false;           // acc: running sums in fp32 (f32) or half2 (h2)
  bool two_pass = false;  // red: split-K partials by fp32 atomics (at) or stored and
                          //      summed in split order by the tile's last block (tp,
                          //      deterministic)
  int blocks_per_sm = 4;  // p: 0 = one block per (column tile, K-split) unit; else a
                          //    persistent grid of SMs x p blocks striding over the units
                          //    (whole waves, next unit's loads in flight during the
                          //    hand-on); the config string says ".p<n>" only when p > 0
  int stream_rows = 0;    // sr: 0 = the block kernel (everything above); 4, 8, 16 = the
                          //     stream-K kernel (q4_stream.cuh): each warp of the persistent
                          //     grid (p > 0) streams an equal share of the weights, sr packed
                          //     rows per batch of loads (sr must divide group_size / 8); x
                          //     from global (xg) or pregathered (xp), atomics, ks unused (256);
                          //     string ".sr<n>" when > 0
  int stream_groups = 1;  // sg: stream-K only; 1 = a batch lies inside one group; 2, 4 = a
                          //     batch is exactly that many whole groups (group_size / 8 * sg
                          //     == sr, groups of >= 4 packed rows: g32 and g64 at sr 8 or 16);
                          //     string ".sg<n>" when > 1
  int tensor_dots =
      0;  // tc: 0 = fp16 FMA dots (the kernels above); 1, 2 = the tile kernel
          //     (q4_tile.cuh, sm_80+): a block owns whole tiles of 8 * cpt
          //     columns (cpt 2 or 4, lw = 32 * cpt), its bt threads split K in
          //     batches of sr rows (and sg groups) and reduce in shared memory,
          //     dots on mma.sync in fp32; p is the launch bound's blocks per SM
          //     (1 to 4), xg or xp, f32, at (no atomics are used), ks 256, mb 1
          //     (more rows are passes) or 8, 16 (rows per pass in B). 1: (q - z) dequantized
          //     exactly; 2: biased words, bias and zero removed in fp32. String ".tc<n>" when > 0.
};

struct Q4MatmulGeometry {
  unsigned grid_x = 1;         // column tiles: ceil(N / (32 * cpt)); persistent: the blocks
                               // (stream-K: at most one batch of sr rows per warp)
  unsigned grid_y = 1;         // K-splits: ceil(K / ks); persistent: 1
  unsigned block_x = 1;        // bt
  unsigned gather_grid_x = 0;  // xp only: ceil(K / 256) blocks of 256 threads, grid_y = M
};

// The scratch memory one launch needs, as byte offsets into one buffer. The reduction area and
// the counters must be zero before the first launch; every launch leaves them zero again.
struct Q4MatmulWorkspace {
  int64_t reduction_offset = 0;  // fp32: M*N (at) or splits*M*N (tp); none when one split
  int64_t counters_offset = 0;   // uint32 per column tile; none when one split
  int64_t gathered_offset = 0;   // fp16 [M, K] sorted activations (xp only)
  int64_t bytes = 0;             // total; 0 when the launch needs no scratch
  int64_t zeroed_bytes = 0;      // leading bytes that must start zero (reduction + counters)
};

// The parameters and their allowed values; the tuner enumerates them from here.
std::vector<TuningParameter> q4_matmul_parameters();
// Stream-K batches never straddle a group (so neither a tile's end): a batch of sr rows lies
// inside one group, or is exactly sg whole groups of whole 4-row dot chains. stream_rows > 0.
bool batches_fit_groups(const Q4MatmulConfig& cfg, int group_size);
// Whether cfg may run this shape on this device (mirrors the static_asserts in q4_matmul.cu).
bool legal(const Q4MatmulConfig& cfg, const DeviceInfo& device, const Q4MatmulShape& shape);
// The fewest rows of x (M) a config is legal for: mb / 2 + 1 (a pass at most half padding), but
// for the multi-row tile configs 2 (mb 8) and 9 (mb 16), whose padding rows cost no extra mma.
int64_t min_rows(const Q4MatmulConfig& cfg);
// The tuning space, shape-independent, default first: every layout (bt 64..256 x cpt/lw x ks x
// mb) with the default strategy (xs, f32, at, one block per unit), the persistent grids measured
// to win at M = 1 (and a few for larger mb), plus every strategy (xg/xs/xp x f32/h2 x at/tp) on
// four anchor layouts (bt256.cpt4.lw128.ks256 one block per unit and persistent p4,
// bt64.cpt2.lw32.ks1024, bt32.cpt8.lw128.ks512) at mb 1 and their largest mb of 2 or 4; and a
// handful of stream-K layouts (sr > 0), each with xg and xp.
std::vector<Q4MatmulConfig> q4_matmul_configs();
// The legal configs for a device and shape.
std::vector<Q4MatmulConfig> space(const DeviceInfo& device, const Q4MatmulShape& shape);
// sm_count sizes persistent grids (SMs x p blocks, never more than the units); 0: one block per
// unit, which any config runs correctly on.
Q4MatmulGeometry geometry(const Q4MatmulConfig& cfg, const Q4MatmulShape& shape, int sm_count = 0);
Q4MatmulWorkspace workspace(const Q4MatmulConfig& cfg, const Q4MatmulShape& shape);
// "q4_matmul_kernel<256, 4, 128, 256, 1, true, false, false, 4>" (xp shares the xs kernel), or
// for stream-K "q4_stream_kernel<128, 4, 128, 1, false, 8, 6>" (bt, cpt, lw, mb, h2, sr, p; xp
// shares the xg kernel), or for the tile kernel "q4_tile_kernel<256, 4, 16, 1, true, 3>" (bt,
// cpt, sr, sg, tc == 2, p; then mb when it is 8 or 16)
std::string name_expression(const Q4MatmulConfig& cfg);
// The decode fusions of a stream-K config (q4_stream_fused_kernel in q4_stream.cuh): the input
// computed from its producers (an RMSNorm, SiLU(gate) * up) and the output added into the
// residual row, so a decode layer launches no norm, SiLU or residual add. M = 1 only.
enum class Q4FusedInput { direct = 0, norm = 1, silu = 2 };
struct Q4Fusion {
  Q4FusedInput input = Q4FusedInput::direct;
  bool residual = false;
};
// Whether `cfg` has the fused entry point (stream-K and one-row tile configs, sr > 0).
bool fusable(const Q4MatmulConfig& cfg);
// "q4_stream_fused_kernel<128, 4, 128, 1, false, 8, 6, 1, false>": name_expression's parameters,
// then the input (0 direct, 1 norm, 2 silu) and the residual flag (for tile configs
// "q4_tile_fused_kernel<...>" likewise). fusable(cfg) only.
std::string fused_name_expression(const Q4MatmulConfig& cfg, const Q4Fusion& fusion);
// The gather kernel of xp: "q4_gather_kernel" (extern "C", in every program of the family).
std::string q4_gather_name_expression();
// Canonical config string "bt256.cpt4.lw128.ks256.mb1.xs.f32.at.p4" (".p<n>" only for p > 0, so
// the strings of one-block-per-unit configs are unchanged; stream-K adds ".sr<n>"):
// cache key part, DB column, report label, test name.
std::string to_string(const Q4MatmulConfig& cfg);
// Relative-error bound of the config against the fp32 reference (see the rule above).
double tolerance(const Q4MatmulConfig& cfg);

KernelFamily q4_matmul_family();

}  // namespace q4jit
