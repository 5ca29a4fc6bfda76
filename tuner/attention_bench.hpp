// The device side of deciding one attention bucket: fresh random inputs of one shape (a prefill
// of T rows after p0 cached positions, or a decode step at one length), the fp32 reference
// (model/ref ref::attention), validation of a candidate with its output poisoned (NaN) and the
// cache rows past the sequence NaN (never to be read), and timing over input copies rotated
// beyond the L2 (measure.hpp: graphs, warm-up, events, median). Inputs repeat no pattern; the
// seed is fixed per shape, so a rerun measures the same numbers.
// Not here: which candidates exist or win (attention_path.hpp), the loop (attention_path_tuner).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "cache/tuning_db.hpp"
#include "runtime/backend.hpp"
#include "tuner/attention_path.hpp"
#include "tuner/attention_runner.hpp"
#include "tuner/measure.hpp"

namespace q4jit {

// Relative error bound of every attention family against the fp32 reference, per query row
// (mma rounds P to fp16; the SIMT kernels and decode sum in another fp32 order).
inline constexpr double kAttentionTolerance = 2e-3;

// Query rows a prefill's reference covers: all of them when that costs at most
// kFullReferenceWork multiply-adds (T x positions x H x D), else the first and last four, those
// around every tile size (16 .. 128) and eight more spread over T.
std::vector<int64_t> reference_rows(int64_t T, int64_t first_position,
                                    const AttentionGeometry& geometry);
inline constexpr int64_t kFullReferenceWork = int64_t(1) << 32;

// One prefill shape: T query rows at positions p0 .. p0+T-1, q rows as in a fused qkv row.
class PrefillBench {
 public:
  PrefillBench(Backend& backend, const AttentionGeometry& geometry, int64_t T,
               int64_t first_position, int max_copies);
  const AttentionPrefillShape& shape() const { return shape_; }
  // Runs the candidate once on copy 0: ok, wrong_result (relative_error, detail: the first bad
  // row, a stray write or a row left unwritten) or launch_failed.
  TrialRecord validate(const PrefillChoice& choice, const Function& function);
  // Median microseconds per call (a probe sizes the graphs, then one measured repetition).
  double time(const PrefillChoice& choice, const Function& function);

 private:
  Backend& backend_;
  AttentionPrefillShape shape_;
  std::vector<int64_t> rows_;          // reference rows
  std::vector<float> reference_;       // [rows_.size(), H * D]
  std::vector<DeviceBuffer> buffers_;  // q, keys, values, out per copy (copy 0 first)
};

// One decode step at `length` positions, for the split configurations GpuOps runs.
class DecodeBench {
 public:
  DecodeBench(Backend& backend, const AttentionGeometry& geometry, int64_t length,
              const std::map<int, AttentionDecodeConfig>& configs, int max_copies);
  const AttentionDecodeShape& shape() const { return shape_; }
  // Two launches (the counters each leaves must serve the next), both compared.
  TrialRecord validate(const AttentionDecodeConfig& cfg, const Function& function);
  double time(const AttentionDecodeConfig& cfg, const Function& function);

 private:
  void launch(const AttentionDecodeConfig& cfg, const Function& function, int copy,
              StreamView stream);

  Backend& backend_;
  AttentionDecodeShape shape_;
  std::vector<float> reference_;       // [H * D]
  std::vector<DeviceBuffer> buffers_;  // q, keys, values, out per copy (copy 0 first)
  DeviceBuffer workspace_, length_;
  int64_t counters_bytes_ = 0;
};

}  // namespace q4jit
