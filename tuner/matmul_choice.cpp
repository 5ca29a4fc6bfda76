// The matmul path and configuration per shape and row count (matmul_choice.hpp).
#include "tuner/matmul_choice.hpp"

#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/path_decision.hpp"
#include "tuner/projection_fusion.hpp"
#include "tuner/q4_matmul_tuning.hpp"
#include "tuner/q4_mma_tuning.hpp"

namespace q4jit {

std::string to_string(MatmulPath path) {
  switch (path) {
    case MatmulPath::gemv:
      return "gemv";
    case MatmulPath::mma:
      return "mma";
    case MatmulPath::dequant_gemm:
      return "dequant_gemm";
  }
  return "?";
}

std::optional<MatmulPath> parse_matmul_path(const std::string& text) {
  for (MatmulPath path : {MatmulPath::gemv, MatmulPath::mma, MatmulPath::dequant_gemm}) {
    if (to_string(path) == text) return path;
  }
  return std::nullopt;
}

std::string MatmulChoice::describe() const {
  std::string config;
  switch (path) {
    case MatmulPath::gemv:
      config = to_string(gemv);
      break;
    case MatmulPath::mma:
      config = to_string(mma);
      break;
    case MatmulPath::dequant_gemm:
      config = to_string(dequantize) + "+" + to_string(gemm);
      break;
  }
  return to_string(path) + " " + config + (tuned ? " (tuned)" : " (default)");
}

MatmulChooser::MatmulChooser(const TuningDb* db, DeviceFingerprint fingerprint, DeviceInfo device)
    : db_(db),
      fingerprint_(std::move(fingerprint)),
      device_(std::move(device)),
      gemv_source_hash_(family_source_hash(q4_matmul_family())),
      mma_source_hash_(family_source_hash(q4_mma_family())),
      dequant_gemm_source_hash_(dequant_gemm_source_hash()),
      path_source_hash_(matmul_path_source_hash()),
      fusion_source_hash_(projection_fusion_source_hash()) {}

MatmulChoice MatmulChooser::choose(const MatmulShapeKey& shape, int64_t M) const {
  MatmulChoice choice = default_choice(shape, M);
  if (db_ == nullptr || db_->read_only()) return choice;
  if (stored_decision(shape, M, choice)) return choice;
  tuned_default_path(shape, M, choice);
  return choice;
}

bool MatmulChooser::fuse(const MatmulShapeKey& fused, std::span<const MatmulShapeKey> parts) const {
  if (db_ == nullptr || db_->read_only()) return true;
  const std::optional<DecisionRecord> decision = db_->find_decision(
      make_tuning_key(fingerprint_, kProjectionFusionFamily, fusion_source_hash_, fused, 1));
  // A decision for other parts of the same fused N (another model's split) says nothing here.
  if (!decision || decision->config != fusion_parts_text(parts)) return true;
  return decision->choice != kSeparateChoice;
}

std::optional<Q4MatmulConfig> MatmulChooser::fused_gemv(const MatmulShapeKey& shape) const {
  const MatmulChoice chosen = choose(shape, 1);
  if (chosen.path == MatmulPath::gemv && fusable(chosen.gemv)) return chosen.gemv;
  const Q4MatmulShape one_row{1, shape.K, shape.N, shape.group_size, shape.act_order};
  const auto usable = [&](const Q4MatmulConfig& cfg) {
    return fusable(cfg) && legal(cfg, device_, one_row);
  };
  std::optional<Q4MatmulConfig> best;
  double best_us = 0;
  if (db_ != nullptr) {
    const TuningKey key =
        make_tuning_key(fingerprint_, family_of(MatmulPath::gemv), gemv_source_hash_, shape, 1);
    for (const TrialRecord& trial : db_->trials(key)) {
      const auto found = q4_matmul_configs_by_name().find(trial.config);
      if (trial.status != TrialStatus::ok || trial.median_us <= 0 ||
          found == q4_matmul_configs_by_name().end() || !usable(found->second))
        continue;
      if (!best || trial.median_us < best_us) {
        best = found->second;
        best_us = trial.median_us;
      }
    }
  }
  if (best) return best;
  for (const Q4MatmulConfig& cfg : space(device_, one_row))
    if (usable(cfg)) return cfg;
  return std::nullopt;
}

namespace {

Q4MatmulShape gemv_shape(const MatmulShapeKey& shape, int64_t M) {
  return {M, shape.K, shape.N, shape.group_size, shape.act_order};
}

Q4MmaShape mma_shape(const MatmulShapeKey& shape, int64_t M) {
  return {M, shape.K, shape.N, shape.group_size, shape.act_order};
}

}  // namespace

MatmulChoice MatmulChooser::default_choice(const MatmulShapeKey& shape, int64_t M) const {
  MatmulChoice choice;
  const bool tensor_cores = q4_mma_family().supports(device_.sm());
  if (M > kDefaultGemvMaxRows && tensor_cores) {
    const Q4MmaConfig cfg = q4_mma_default(device_, mma_shape(shape, M));
    if (legal(cfg, device_, mma_shape(shape, M))) {
      choice.path = MatmulPath::mma;
      choice.mma = cfg;
      return choice;
    }
  }
  const std::vector<Q4MatmulConfig> legal_configs = space(device_, gemv_shape(shape, M));
  if (legal_configs.empty()) {
    throw Error("q4 matmul K" + std::to_string(shape.K) + " N" + std::to_string(shape.N) +
                " group size " + std::to_string(shape.group_size) +
                ": no kernel configuration is legal on " + device_.name);
  }
  choice.gemv = legal_configs.front();
  return choice;
}

bool MatmulChooser::apply_config(const MatmulShapeKey& shape, int64_t M, const std::string& config,
                                 MatmulChoice& choice) const {
  switch (choice.path) {
    case MatmulPath::gemv: {
      const auto found = q4_matmul_configs_by_name().find(config);
      if (found == q4_matmul_configs_by_name().end() ||
          !legal(found->second, device_, gemv_shape(shape, M))) {
        return false;
      }
      choice.gemv = found->second;
      return true;
    }
    case MatmulPath::mma: {
      const auto found = q4_mma_configs_by_name().find(config);
      if (found == q4_mma_configs_by_name().end() ||
          !legal(found->second, device_, mma_shape(shape, M))) {
        return false;
      }
      choice.mma = found->second;
      return true;
    }
    case MatmulPath::dequant_gemm: {
      const std::optional<DequantGemmConfig> found = parse_dequant_gemm(config);
      if (!found || !legal(found->dequantize, device_, {shape.K, shape.N, shape.group_size}) ||
          !legal(found->gemm, device_, GemmShape{M, shape.K, shape.N})) {
        return false;
      }
      choice.dequantize = found->dequantize;
      choice.gemm = found->gemm;
      return true;
    }
  }
  return false;
}

std::optional<WinnerRecord> MatmulChooser::family_winner(const MatmulShapeKey& shape, int64_t M,
                                                         MatmulPath path) const {
  const std::string& hash = path == MatmulPath::gemv  ? gemv_source_hash_
                            : path == MatmulPath::mma ? mma_source_hash_
                                                      : dequant_gemm_source_hash_;
  return db_->find_winner(make_tuning_key(fingerprint_, family_of(path), hash, shape, M));
}

// The decision stored for M's bucket: its path and configuration.
bool MatmulChooser::stored_decision(const MatmulShapeKey& shape, int64_t M,
                                    MatmulChoice& choice) const {
  const std::optional<DecisionRecord> decision = db_->find_decision(
      make_tuning_key(fingerprint_, kMatmulPathFamily, path_source_hash_, shape, M));
  if (!decision) return false;
  const std::optional<MatmulPath> path = parse_matmul_path(decision->choice);
  if (!path) return false;
  MatmulChoice decided = choice;
  decided.path = *path;
  if (!apply_config(shape, M, decision->config, decided)) return false;
  decided.tuned = true;
  const std::optional<WinnerRecord> winner = family_winner(shape, M, *path);
  decided.kernel_key = winner && winner->config == decision->config ? winner->kernel_key : "";
  choice = decided;
  return true;
}

// Without a decision: the default path, with its family's stored winner at M's bucket if any.
bool MatmulChooser::tuned_default_path(const MatmulShapeKey& shape, int64_t M,
                                       MatmulChoice& choice) const {
  const std::optional<WinnerRecord> winner = family_winner(shape, M, choice.path);
  if (!winner || !apply_config(shape, M, winner->config, choice)) return false;
  choice.tuned = true;
  choice.kernel_key = winner->kernel_key;
  return true;
}

}  // namespace q4jit
