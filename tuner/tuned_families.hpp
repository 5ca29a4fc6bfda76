// The matmul paths as the autotuner drives them, one interface for the three: the q4_matmul GEMV
// family, the q4_mma tensor-core family and the dequant_gemm pseudo-family (dequantize_q4 +
// gemm_f16). Each names its candidates at a shape and M bucket (footprints, default first),
// compiles and loads them (kernel store first), says which compiled ones cannot run (compile
// failure, spills, zero occupancy), launches one by its config string on a shared set of
// operands exactly as the engine runs it (model/gpu/matmul_dispatch.cpp: act-order q4_mma gathers
// x once and runs unpermuted; the default configurations are the engine's), and gives the requests
// a warm load of a winner makes. Needs a Backend to load and launch; the footprints and names
// need none. Not here: the search (problem_search.hpp), the device data (shape_bench.hpp), the
// loop (autotuner.cpp).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"
#include "tuner/candidates.hpp"
#include "tuner/matmul_choice.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

// Device addresses of one product's operands, for every path.
struct MatmulOperands {
  uint64_t out = 0;        // fp16 [M, N]
  uint64_t x = 0;          // fp16 [M, K], original row order
  uint64_t x_map = 0;      // int32 [K] sorted row -> original row (act-order), else 0
  uint64_t sorted_of = 0;  // int32 [K] original row -> sorted row (act-order), else 0
  uint64_t qweight = 0;    // int32 [K/8, N], rows sorted when act-order
  uint64_t scales = 0;     // fp16 [G, N]
  uint64_t qzeros = 0;     // int32 [G, N/8]
  uint64_t workspace = 0;  // the config's workspace_bytes; its zeroed part zero before first use
};

// Scratch one launch needs: `bytes` in all, the leading `zeroed` bytes zero before the first
// launch (every launch leaves them zero again).
struct ScratchNeed {
  int64_t bytes = 0;
  int64_t zeroed = 0;
};

class TunedFamily {
 public:
  virtual ~TunedFamily() = default;
  virtual MatmulPath path() const = 0;
  virtual std::string name() const = 0;         // the results table's family
  virtual std::string source_hash() const = 0;  // of the kernels it compiles
  // Candidates at (shape, bucket), default first.
  virtual std::vector<CandidateFootprint> footprints(const MatmulShapeKey& shape,
                                                     int bucket) const = 0;
  // The configuration the built-in defaults take (MatmulChooser's); empty when none is legal.
  virtual std::string default_config(const MatmulShapeKey& shape, int bucket) const = 0;
  // Compiles (store first) and loads the configurations not loaded yet; failures are kept.
  virtual void load(const std::vector<std::string>& configs, int jobs) = 0;
  // Why a loaded or failed configuration cannot run, or nullopt when it may.
  virtual std::optional<CandidateVerdict> verdict(const std::string& config) const = 0;
  virtual ScratchNeed scratch(const std::string& config, const MatmulShapeKey& shape,
                              int64_t M) const = 0;
  virtual void launch(const std::string& config, const MatmulShapeKey& shape, int64_t M,
                      const MatmulOperands& operands, StreamView stream) const = 0;
  // Relative error bound against the fp32 reference.
  virtual double tolerance(const std::string& config) const = 0;
  virtual std::vector<CompileRequest> winner_requests(const std::string& config,
                                                      const CompileTarget& target) const = 0;
};

// whole_gemm_space: the dequant_gemm family tries every GEMM configuration, not only the default.
std::unique_ptr<TunedFamily> make_tuned_family(MatmulPath path, Backend& backend,
                                               KernelService& service,
                                               const PostCompileLimits& limits,
                                               bool whole_gemm_space = false);

}  // namespace q4jit
