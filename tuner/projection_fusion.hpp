// Whether fusing projections that read one input pays: the GPU engine runs q, k, v as one qkv
// matmul and gate, up as one gate_up matmul when their permutations are equal (one launch, x read
// once), but a fused shape may tune worse than its parts. Per fused shape and M bucket the
// decision compares the time of the fused shape's chosen kernel (its matmul path decision,
// path_decision.hpp) with the sum of its parts' chosen kernels (each part is a launch of its own),
// with the 2% rule in favour of fusing (the built-in default). Decisions are stored in the
// decisions table under the family "projection_fusion", their config naming the parts' N
// ("4096+1024+1024"), with a source hash over every matmul family; the engine reads bucket 1
// (decode, which fixes the weight layout at load) through MatmulChooser::fuse.
// Pure: no GPU, no database here (autotuner.cpp decides and stores, MatmulChooser reads).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "tuner/autotuner.hpp"

namespace q4jit {

inline constexpr const char* kProjectionFusionFamily = "projection_fusion";
inline constexpr const char* kFusedChoice = "fused";
inline constexpr const char* kSeparateChoice = "separate";

// A fused shape of a model and the shapes of its parts, in the engine's order.
struct FusedProjection {
  std::string name;  // "qkv" or "gate_up"
  MatmulShapeKey fused;
  std::vector<MatmulShapeKey> parts;  // q, k, v or gate, up
};

// The fused shapes among `shapes` (model_shapes.hpp names them "qkv" and "gate_up") whose parts
// ("q", "k", "v"; "gate", "up") are among `shapes` too, with the fused shape's K, group size and
// act-order and N adding up to its N. A fused shape whose parts are missing or ambiguous is left
// out: nothing to compare it with.
std::vector<FusedProjection> fused_projections(const std::vector<TuneShape>& shapes);

// The parts' N joined by '+': "4096+1024+1024" (a decision's config).
std::string fusion_parts_text(std::span<const MatmulShapeKey> parts);
// SHA-256 over the matmul path decision's source hash (every matmul family): a changed kernel
// re-decides.
std::string projection_fusion_source_hash();

// fused_us: the fused shape's chosen kernel; part_us: each part's. Separate wins only when the
// fused time exceeds the parts' sum by more than required_gain; nullopt when a time is missing
// (not positive) or there are no parts.
std::optional<DecisionRecord> decide_fusion(double fused_us, std::span<const double> part_us,
                                            const std::string& parts_text,
                                            double required_gain = 0.02);

}  // namespace q4jit
