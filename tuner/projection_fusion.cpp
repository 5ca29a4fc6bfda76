// Projection fusion decisions (projection_fusion.hpp).
#include "tuner/projection_fusion.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "common/sha256.hpp"
#include "tuner/path_decision.hpp"

namespace q4jit {

namespace {

struct FusionName {
  const char* fused;
  std::vector<std::string> parts;
};

// model_shapes.hpp's names: the fused shape's and its parts', in the engine's order.
std::vector<FusionName> fusion_names() {
  return {{"qkv", {"q", "k", "v"}}, {"gate_up", {"gate", "up"}}};
}

bool has_projection(const TuneShape& shape, const std::string& name) {
  std::stringstream list(shape.projections);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (item == name) return true;
  }
  return false;
}

bool same_input(const MatmulShapeKey& a, const MatmulShapeKey& b) {
  return a.K == b.K && a.group_size == b.group_size && a.act_order == b.act_order;
}

// The one shape among `shapes` that projection `name` has with the fused shape's input, or
// nullopt when none or several do.
std::optional<MatmulShapeKey> part_shape(const std::vector<TuneShape>& shapes,
                                         const std::string& name, const MatmulShapeKey& fused) {
  std::optional<MatmulShapeKey> found;
  for (const TuneShape& shape : shapes) {
    if (!has_projection(shape, name) || !same_input(shape.shape, fused)) continue;
    if (found) return std::nullopt;
    found = shape.shape;
  }
  return found;
}

}  // namespace

std::vector<FusedProjection> fused_projections(const std::vector<TuneShape>& shapes) {
  std::vector<FusedProjection> fused;
  for (const TuneShape& shape : shapes) {
    for (const FusionName& name : fusion_names()) {
      if (!has_projection(shape, name.fused)) continue;
      FusedProjection projection{name.fused, shape.shape, {}};
      int64_t N = 0;
      for (const std::string& part : name.parts) {
        const std::optional<MatmulShapeKey> found = part_shape(shapes, part, shape.shape);
        if (!found) break;
        projection.parts.push_back(*found);
        N += found->N;
      }
      if (projection.parts.size() == name.parts.size() && N == shape.shape.N)
        fused.push_back(std::move(projection));
    }
  }
  return fused;
}

std::string fusion_parts_text(std::span<const MatmulShapeKey> parts) {
  std::string text;
  for (const MatmulShapeKey& part : parts) {
    if (!text.empty()) text += '+';
    text += std::to_string(part.N);
  }
  return text;
}

std::string projection_fusion_source_hash() {
  Sha256 hash;
  hash.update_field(kProjectionFusionFamily).update_field(matmul_path_source_hash());
  return to_hex(hash.finish());
}

std::optional<DecisionRecord> decide_fusion(double fused_us, std::span<const double> part_us,
                                            const std::string& parts_text, double required_gain) {
  if (!(fused_us > 0) || part_us.empty()) return std::nullopt;
  if (std::any_of(part_us.begin(), part_us.end(), [](double us) { return !(us > 0); }))
    return std::nullopt;
  const double separate_us = std::accumulate(part_us.begin(), part_us.end(), 0.0);
  const bool separate = fused_us > separate_us * (1 + required_gain);
  DecisionRecord decision;
  decision.choice = separate ? kSeparateChoice : kFusedChoice;
  decision.config = parts_text;
  decision.median_us = separate ? separate_us : fused_us;
  decision.default_choice = kFusedChoice;
  decision.default_us = fused_us;
  decision.alternatives = {{kFusedChoice, fused_us}, {kSeparateChoice, separate_us}};
  return decision;
}

}  // namespace q4jit
