// The device side of tuning one weight shape, shared by every path and M bucket of it: random
// GPTQ weights in the loaded layout (copies rotated beyond the L2 for timing), activations of up
// to the largest bucket's rows, one scratch buffer, and the fp32 reference. Activation rows repeat
// with a period of kReferenceRows (17: prime, so no power-of-two tile boundary lines up with it),
// so the reference is computed once, for 17 rows, whatever M; validation compares blocks of rows
// at the start, middle and end of M (all of them up to 64 rows).
// Not here: which kernels run (tuned_families.hpp), searching (problem_search.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "cache/tuning_db.hpp"
#include "model/gptq.hpp"
#include "runtime/backend.hpp"
#include "tuner/measure.hpp"
#include "tuner/problem_key.hpp"
#include "tuner/tuned_families.hpp"

namespace q4jit {

inline constexpr int kReferenceRows = 17;

// Row blocks [begin, end) of an M-row product that validation compares: all rows up to 64, else
// 32 at the start, 32 around the middle and 32 at the end.
std::vector<std::pair<int64_t, int64_t>> validation_rows(int64_t M);

// Random GPTQ weights of `shape` (never all zeros; act-order groups spread over K), from `seed`.
GptqLinear random_linear(const MatmulShapeKey& shape, uint64_t seed);

using LaunchProduct = std::function<void(const MatmulOperands& operands, StreamView stream)>;

class ShapeBench {
 public:
  // max_rows: the largest M to run; scratch_bytes: the largest scratch of any candidate;
  // max_weight_copies caps the rotation (tiny models' weights live in L2 anyway).
  ShapeBench(Backend& backend, const MatmulShapeKey& shape, int64_t max_rows, int64_t scratch_bytes,
             int max_weight_copies);

  int copies() const { return int(copies_.size()); }
  MatmulOperands operands(int copy) const;

  // Runs `launch` once at M rows on copy 0, the output poisoned (NaN) first, and compares the
  // validation rows with the reference: status ok or wrong_result (with relative_error and
  // detail), or launch_failed when it threw.
  TrialRecord validate(int64_t M, double tolerance, int64_t zeroed_bytes,
                       const LaunchProduct& launch);
  // One repetition: the median microseconds per call of graphs of calls rotating over the
  // first `copies` weight copies.
  double time(int copies, int64_t zeroed_bytes, const LaunchProduct& launch,
              const MeasureOptions& options);

 private:
  struct WeightCopy {
    DeviceBuffer qweight, scales, qzeros, x_map, sorted_of;
  };
  template <typename T>
  DeviceBuffer upload(const std::vector<T>& host);

  Backend& backend_;
  MatmulShapeKey shape_;
  int64_t max_rows_;
  std::vector<float> reference_;  // [kReferenceRows, N]
  std::vector<WeightCopy> copies_;
  DeviceBuffer x_, out_, scratch_;
};

}  // namespace q4jit
