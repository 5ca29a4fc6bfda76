// Which kernel runs one GPTQ linear layer of a weight shape at M rows on this device, and with
// which configuration: the q4_matmul GEMV family (few rows), the q4_mma tensor-core GEMM, or
// dequantize_q4 + gemm_f16. In order: the tuned decision of M's bucket (path and configuration,
// the decisions table, path_decision.hpp); else the default path with its family's tuned winner
// at that bucket; else the built-in defaults below. The engine asks once per shape and row count
// it will run, at load, so a warm start reads the database and compiles nothing new. Also whether
// projections that read one input run fused (the decisions table, projection_fusion.hpp).
// Not here: tuning (autotuner.hpp, tune_missing.hpp), loading and launching (the runners, the
// engine).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "cache/tuning_db.hpp"
#include "kernel_sources/dequantize_q4.hpp"
#include "kernel_sources/gemm_f16.hpp"
#include "kernel_sources/q4_matmul.hpp"
#include "kernel_sources/q4_mma.hpp"
#include "runtime/device_info.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

enum class MatmulPath {
  gemv,          // q4_matmul: reads the packed weights once per rows_per_block rows of x
  mma,           // q4_mma: dequantizes tiles in registers, tensor cores (sm_80+)
  dequant_gemm,  // dequantize_q4 to an fp16 scratch matrix, then gemm_f16 (sm_80+)
};
std::string to_string(MatmulPath path);  // "gemv", "mma", "dequant_gemm"
std::optional<MatmulPath> parse_matmul_path(const std::string& text);  // inverse of to_string

struct MatmulChoice {
  MatmulPath path = MatmulPath::gemv;
  Q4MatmulConfig gemv;          // used when path == gemv
  Q4MmaConfig mma;              // used when path == mma
  DequantizeConfig dequantize;  // used when path == dequant_gemm
  GemmConfig gemm;              // used when path == dequant_gemm
  bool tuned = false;           // the configuration is a stored winner, not the default
  std::string kernel_key;       // the winner's kernel-store key when tuned, else empty

  // "gemv bt256.cpt4.lw128.ks256.mb1.xs.f32.at.p4 (tuned)"
  std::string describe() const;
};

class MatmulChooser {
 public:
  // db may be null (or read-only, or without rows for this device): defaults only.
  MatmulChooser(const TuningDb* db, DeviceFingerprint fingerprint, DeviceInfo device);

  // The kernel for `shape` at M rows. Always legal for the shape on this device: a stored
  // decision or winner that is not (a hand-edited or foreign row) is ignored.
  MatmulChoice choose(const MatmulShapeKey& shape, int64_t M) const;

  // Whether the projections `parts` (q, k, v or gate, up: the keys passed to choose) should be
  // uploaded and run as the one matmul `fused` (their N side by side). The tuned decision at M
  // bucket 1 (decode fixes the weight layout at load) when one is stored for these parts, else
  // true (the default). Ask only for parts that can fuse (equal K, group size, permutation).
  bool fuse(const MatmulShapeKey& fused, std::span<const MatmulShapeKey> parts) const;

  // The GEMV configuration of a fused decode launch (q4_stream_fused_kernel, q4_tile_fused_kernel)
  // for `shape` at one row: choose()'s when it is a fusable GEMV; else the fastest fusable
  // configuration that the tuning of bucket 1 validated and timed (a block-kernel winner by a few
  // percent would otherwise keep a whole layer unfused); else the first fusable one of the space.
  // nullopt when none is legal. The engine measures the fused step against the unfused one anyway.
  std::optional<Q4MatmulConfig> fused_gemv(const MatmulShapeKey& shape) const;

  // Defaults without the database: gemv up to kDefaultGemvMaxRows rows (or on GPUs older than
  // sm_80, which lack the tensor-core families), q4_mma above.
  static constexpr int64_t kDefaultGemvMaxRows = 8;

 private:
  MatmulChoice default_choice(const MatmulShapeKey& shape, int64_t M) const;
  bool stored_decision(const MatmulShapeKey& shape, int64_t M, MatmulChoice& choice) const;
  // Sets the configuration of choice.path from `config` when it names one legal at M rows.
  bool apply_config(const MatmulShapeKey& shape, int64_t M, const std::string& config,
                    MatmulChoice& choice) const;
  // The stored winner of choice.path's family at M's bucket, or nullopt.
  std::optional<WinnerRecord> family_winner(const MatmulShapeKey& shape, int64_t M,
                                            MatmulPath path) const;
  bool tuned_default_path(const MatmulShapeKey& shape, int64_t M, MatmulChoice& choice) const;

  const TuningDb* db_;
  DeviceFingerprint fingerprint_;
  DeviceInfo device_;
  std::string gemv_source_hash_;
  std::string mma_source_hash_;
  std::string dequant_gemm_source_hash_;
  std::string path_source_hash_;
  std::string fusion_source_hash_;
};

}  // namespace q4jit
