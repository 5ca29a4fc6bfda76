// The on-disk store of compiled kernels (CUBIN or PTX plus lowered names and the compile log),
// keyed by a SHA-256 over everything that changes the binary. The key's inputs are assembled by
// runtime/ (runtime/compile_key.cpp); this file only names, writes, validates, lists and evicts
// entries. The file format and the invariants are described at the top of kernel_store.cpp.
// Not here: the tuning database (cache/tuning_db, a later issue).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace q4jit {

// Bump on any change to the serialized layout (kernel_store.cpp) or to what the key covers.
inline constexpr uint32_t kStoreVersion = 1;

// What names an entry. Only `hash` decides identity; the rest makes file names readable.
struct StoreKey {
  std::string family;  // "rms_norm"
  std::string config;  // "bt256.vw8.sr0" (or "default" for a multi-variant program)
  std::string hash;    // 64 hex digits
  int sm = 0;          // 90 for sm_90 / compute_90
  bool ptx = false;    // PTX for the driver to JIT instead of a CUBIN
  std::string nvrtc;   // "13-0"

  // "rms_norm.bt256.vw8.sr0.0123456789abcdef.sm90.nvrtc13-0.v1.cubin"
  std::string file_name() const;
};

struct StoredKernel {
  StoreKey key;
  std::string binary;                                              // CUBIN or PTX bytes
  std::vector<std::pair<std::string, std::string>> lowered_names;  // name expression, lowered
  std::string log;                                                 // NVRTC's log (warnings)
};

struct StoreEntryInfo {
  std::string file_name;
  int64_t bytes = 0;
  int64_t age_seconds = 0;  // since last written or read
};

struct StoreStats {
  std::filesystem::path dir;
  int64_t entries = 0;
  int64_t bytes = 0;
  int64_t size_cap_bytes = 0;
  int64_t temporary_files = 0;  // *.tmp.* left by writers in progress or crashed
};

struct KernelStoreOptions {
  std::filesystem::path dir;
  int64_t size_cap_bytes = int64_t{2} << 30;
  // Receives one-line warnings (a corrupt entry removed). Default: stderr.
  std::function<void(const std::string&)> warn;
};

// Serialization, exposed for the format golden test.
std::string serialize_stored_kernel(const StoredKernel& kernel);
// The entry in `bytes`, or an Error saying what is wrong (magic, version, length, checksum...).
StoredKernel parse_stored_kernel(const std::string& bytes, const std::string& file_name);

class KernelStore {
 public:
  explicit KernelStore(KernelStoreOptions options);

  // The entry for key, validated; nullopt when absent. A corrupt entry is removed, reported
  // through warn, and nullopt returned so the caller recompiles.
  std::optional<StoredKernel> load(const StoreKey& key) const;
  // Writes the entry (lock, re-check, temporary file, fsync, rename), then evicts the
  // least recently used entries beyond the size cap.
  void save(const StoredKernel& kernel) const;

  std::vector<StoreEntryInfo> list() const;
  StoreStats stats() const;
  // Removes every entry and temporary file; returns how many files went.
  int64_t clear() const;
  const std::filesystem::path& dir() const { return options_.dir; }

 private:
  void evict_over_cap(const std::string& keep) const;
  KernelStoreOptions options_;
};

// The store folder: `override_dir` when not empty, else $Q4JIT_CACHE_DIR, else
// $XDG_CACHE_HOME/q4jit/kernels, else $HOME/.cache/q4jit/kernels.
std::filesystem::path default_kernel_store_dir(const std::string& override_dir = "");

}  // namespace q4jit
