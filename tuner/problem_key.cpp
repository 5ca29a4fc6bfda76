// Problem keys and M buckets (problem_key.hpp).
#include "tuner/problem_key.hpp"

#include <algorithm>
#include <sstream>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "runtime/compile_types.hpp"

namespace q4jit {

int m_bucket(int64_t M) {
  int bucket = 1;
  while (bucket < M && bucket < (1 << 30)) bucket *= 2;
  return bucket;
}

std::vector<int> parse_m_buckets(const std::string& text, const std::string& option) {
  std::vector<int> buckets;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    size_t used = 0;
    long value = 0;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || value <= 0 || value > 65536) {
      throw Error(option + ": '" + item + "' is not a row count from 1 to 65536");
    }
    buckets.push_back(m_bucket(value));
  }
  if (buckets.empty()) throw Error(option + ": no value given");
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  return buckets;
}

DeviceFingerprint device_fingerprint(const DeviceInfo& device, const Compiler& compiler) {
  return {device.name, device.sm(), device.sm_count, device.driver_version, compiler.version_tag()};
}

std::string family_source_hash(const KernelFamily& family) {
  const KernelSource source = embedded_kernel_source(family.source);
  Sha256 hash;
  hash.update_field(source.main.name).update_field(source.main.sha256);
  for (const SourceFile& header : source.headers) {
    hash.update_field(header.name).update_field(header.sha256);
  }
  return to_hex(hash.finish());
}

TuningKey make_tuning_key(const DeviceFingerprint& device, const KernelFamily& family,
                          const std::string& source_hash, const MatmulShapeKey& shape, int64_t M) {
  return make_tuning_key(device, family.name, source_hash, shape, M);
}

TuningKey make_tuning_key(const DeviceFingerprint& device, const std::string& family,
                          const std::string& source_hash, const MatmulShapeKey& shape, int64_t M) {
  TuningKey key;
  key.device = device;
  key.family = family;
  key.source_hash = source_hash;
  key.K = shape.K;
  key.N = shape.N;
  key.group_size = shape.group_size;
  key.act_order = shape.act_order;
  key.m_bucket = m_bucket(M);
  key.dtype = "f16";
  return key;
}

}  // namespace q4jit
