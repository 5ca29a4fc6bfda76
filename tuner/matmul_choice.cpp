// The matmul path and configuration per shape and row count (matmul_choice.hpp).
#include "tuner/matmul_choice.hpp"

#include "tuner/q4_matmul_tuning.hpp"

namespace q4jit {

std::string to_string(MatmulPath path) {
  switch (path) {
    case MatmulPath::gemv: return "gemv";
    case MatmulPath::mma: return "mma";
    case MatmulPath::dequant_gemm: return "dequant_gemm";
  }
  return "?";
}

std::string MatmulChoice::describe() const {
  std::string config;
  switch (path) {
    case MatmulPath::gemv: config = to_string(gemv); break;
    case MatmulPath::mma: config = to_string(mma); break;
    case MatmulPath::dequant_gemm: config = to_string(dequantize) + "+" + to_string(gemm); break;
  }
  return to_string(path) + " " + config + (tuned ? " (tuned)" : " (default)");
}

MatmulChooser::MatmulChooser(const TuningDb* db, DeviceFingerprint fingerprint, DeviceInfo device)
    : db_(db),
      fingerprint_(std::move(fingerprint)),
      device_(std::move(device)),
      gemv_source_hash_(family_source_hash(q4_matmul_family())) {}

MatmulChoice MatmulChooser::choose(const MatmulShapeKey& shape, int64_t M) const {
  MatmulChoice choice = default_choice(shape, M);
  if (choice.path == MatmulPath::gemv) tuned_gemv(shape, M, choice);
  return choice;
}

namespace {

Q4MatmulShape gemv_shape(const MatmulShapeKey& shape, int64_t M) {
  return {M, shape.K, shape.N, shape.group_size, shape.act_order};
}

}  // namespace

MatmulChoice MatmulChooser::default_choice(const MatmulShapeKey& shape, int64_t M) const {
  MatmulChoice choice;
  const bool tensor_cores = q4_mma_family().supports(device_.sm());
  if (M > kDefaultGemvMaxRows && tensor_cores) {
    const Q4MmaShape mma_shape{M, shape.K, shape.N, shape.group_size, shape.act_order};
    const std::vector<Q4MmaConfig> legal_configs = space(device_, mma_shape);
    if (!legal_configs.empty()) {
      choice.path = MatmulPath::mma;
      choice.mma = legal_configs.front();
      return choice;
    }
  }
  const Q4MatmulShape gemv = gemv_shape(shape, M);
  const std::vector<Q4MatmulConfig> legal_configs = space(device_, gemv);
  if (legal_configs.empty()) {
    throw Error("q4 matmul K" + std::to_string(shape.K) + " N" + std::to_string(shape.N) +
                " group size " + std::to_string(shape.group_size) +
                ": no kernel configuration is legal on " + device_.name);
  }
  choice.gemv = legal_configs.front();
  return choice;
}

// Replaces the default GEMV config by the stored winner of the shape's M bucket, if any.
bool MatmulChooser::tuned_gemv(const MatmulShapeKey& shape, int64_t M, MatmulChoice& choice) const {
  if (db_ == nullptr || db_->read_only()) return false;
  const TuningKey key =
      make_tuning_key(fingerprint_, q4_matmul_family(), gemv_source_hash_, shape, M);
  const std::optional<WinnerRecord> winner = db_->find_winner(key);
  if (!winner) return false;
  const auto& by_name = q4_matmul_configs_by_name();
  const auto found = by_name.find(winner->config);
  if (found == by_name.end() || !legal(found->second, device_, gemv_shape(shape, M))) return false;
  choice.gemv = found->second;
  choice.tuned = true;
  choice.kernel_key = winner->kernel_key;
  return true;
}

}  // namespace q4jit
