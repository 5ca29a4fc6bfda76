// The tuning problem key (cache/tuning_db.hpp's TuningKey) assembled from what the runtime knows:
// the device, the compiler, the kernel family's embedded source and the shape, with M rounded up
// to its bucket (1, 2, 4, 8, 16, 32, 64, ...). Not here: storing keys (cache/) or tuning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/tuning_db.hpp"
#include "kernel_sources/family.hpp"
#include "runtime/compiler.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

// The smallest power of two >= M (M >= 1).
int m_bucket(int64_t M);
// "1,2,4,8,16" -> {1, 2, 4, 8, 16}: each rounded up to its bucket, sorted, duplicates removed;
// Error naming the option on anything but positive integers.
std::vector<int> parse_m_buckets(const std::string& text, const std::string& option = "--m");

DeviceFingerprint device_fingerprint(const DeviceInfo& device, const Compiler& compiler);
// SHA-256 (hex) over the family's embedded source and every header it includes.
std::string family_source_hash(const KernelFamily& family);

// The key of a weight shape at M rows.
struct MatmulShapeKey {
  int64_t K = 0;
  int64_t N = 0;
  int64_t group_size = 0;
  bool act_order = false;
};
TuningKey make_tuning_key(const DeviceFingerprint& device, const KernelFamily& family,
                          const std::string& source_hash, const MatmulShapeKey& shape, int64_t M);
// The same for a family that is not one kernel family: "dequant_gemm", or a decision's kind
// ("matmul_path").
TuningKey make_tuning_key(const DeviceFingerprint& device, const std::string& family,
                          const std::string& source_hash, const MatmulShapeKey& shape, int64_t M);

}  // namespace q4jit
