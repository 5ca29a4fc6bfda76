// Which matmul path (matmul_choice.hpp) runs a weight shape at an M bucket, decided from the tuned
// winners of the paths' families: which paths are tuned at a bucket, which one the built-in
// defaults take there, and the decision with the 2% rule (another path must beat the default
// path by more than 2%, as a configuration must beat the default configuration). Decisions are
// stored in the tuning database's decisions table under the family "matmul_path", with a source
// hash over every family compared, so a changed kernel source retunes them.
// Pure: no GPU, no database here (autotuner.cpp measures and stores, MatmulChooser reads).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "tuner/matmul_choice.hpp"

namespace q4jit {

inline constexpr const char* kMatmulPathFamily = "matmul_path";
// The GEMV family is tuned up to this bucket (it reads the weights once per 8 rows at best);
// the tensor-core paths from kTensorCoreMinBucket (below it their 16-row tiles are mostly empty).
inline constexpr int kGemvMaxBucket = 16;
inline constexpr int kTensorCoreMinBucket = 16;

// The paths tuned at `bucket`: gemv up to kGemvMaxBucket (at every bucket without tensor
// cores), mma and dequant_gemm from kTensorCoreMinBucket with tensor cores.
std::vector<MatmulPath> tuned_paths(int bucket, bool tensor_cores);
// The path the built-in defaults take at M rows (MatmulChooser's rule): gemv up to
// MatmulChooser::kDefaultGemvMaxRows rows, mma above when it has a legal configuration.
MatmulPath default_path(int64_t M, bool mma_available);
// The tuning family whose winners a path uses: "q4_matmul", "q4_mma", "dequant_gemm".
std::string family_of(MatmulPath path);
// The inverse: the path of a family's winners, or nullopt for another family.
std::optional<MatmulPath> path_of_family(const std::string& family);
// SHA-256 over the source hashes of every family a matmul-path decision compares.
std::string matmul_path_source_hash();

// A path's tuned winner at one bucket.
struct PathTiming {
  MatmulPath path = MatmulPath::gemv;
  std::string config;
  double median_us = 0;
};

// The fastest path, unless the default path is within required_gain of it (then the default
// path). nullopt when no path has a positive time.
std::optional<DecisionRecord> decide_path(const std::vector<PathTiming>& timings,
                                          MatmulPath default_path, double required_gain = 0.02);

}  // namespace q4jit
