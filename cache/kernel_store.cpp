// NOTES ON THE DESIGN OF THE KERNEL STORE
//
// Purpose: keep compiled kernels between runs so that a warm start compiles nothing. One file per
// entry, in one folder (default_kernel_store_dir), named after its key:
//
//   <family>.<config>.<hash16>.<target>.nvrtc<major>-<minor>.v<kStoreVersion>.<cubin|ptx>
//   target: sm90 for a CUBIN, compute90 for PTX; hash16: first 16 hex digits of the key.
//
// File format (all integers little-endian):
//
//   OFFSET  SIZE  DESCRIPTION
//   0       8     magic "q4jitKS\n"
//   8       4     kStoreVersion
//   12      4     zero
//   16      8     payload length P (the file is exactly 56 + P bytes)
//   24      32    SHA-256 of the payload
//   56      P     payload: fields, each a u64 length then its bytes, in this order:
//                 key hash (64 hex), family, config, target, nvrtc, binary, log,
//                 lowered-name count (decimal text), then per name: expression, lowered name
//
// Invariants:
//   (1) An entry's identity is the full 64-digit key hash stored inside it; a file whose stored
//       hash differs from the requested one is treated as corrupt (covers hash16 collisions).
//   (2) An entry is visible under its final name only after write, fsync and rename, so a
//       reader sees a whole old file or a whole new one, never a partial one.
//   (3) Readers never lock. Writers and eviction hold an exclusive flock on <dir>/.lock; a writer
//       re-checks for the entry under the lock and skips the write when another process won.
//   (4) A corrupt entry (bad magic, version, length, checksum or key) is removed with a one-line
//       warning and reported absent, so the caller recompiles.
//   (5) Eviction removes least recently used entries (mtime; a read touches it) until the total is
//       under the cap, never the entry just written.
//   (6) Any change to the layout above MUST bump kStoreVersion (kernel_store.hpp); the golden test
//       in tests/runtime/kernel_store_test.cpp pins it.
#include "cache/kernel_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.hpp"
#include "common/sha256.hpp"

namespace q4jit {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'q', '4', 'j', 'i', 't', 'K', 'S', '\n'};
constexpr size_t kHeaderBytes = 56;
constexpr auto kStaleTemporary = std::chrono::minutes(10);

void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}
void put_u64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}
uint64_t get_u64(const std::string& in, size_t offset) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= uint64_t(uint8_t(in[offset + i])) << (8 * i);
  return value;
}
uint32_t get_u32(const std::string& in, size_t offset) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t(uint8_t(in[offset + i])) << (8 * i);
  return value;
}
void put_field(std::string& out, std::string_view field) {
  put_u64(out, field.size());
  out.append(field);
}

// Reads the payload's fields in order; every read is bounds-checked (the file is untrusted).
class FieldReader {
 public:
  FieldReader(const std::string& bytes, size_t offset, const std::string& file_name)
      : bytes_(bytes), offset_(offset), file_name_(file_name) {}
  std::string next() {
    if (bytes_.size() - offset_ < 8) throw Error(file_name_ + ": truncated field");
    const uint64_t length = get_u64(bytes_, offset_);
    offset_ += 8;
    if (length > bytes_.size() - offset_) throw Error(file_name_ + ": field runs past the end");
    std::string field = bytes_.substr(offset_, length);
    offset_ += length;
    return field;
  }
  bool at_end() const { return offset_ == bytes_.size(); }

 private:
  const std::string& bytes_;
  size_t offset_;
  const std::string& file_name_;
};

std::string target_text(const StoreKey& key) {
  return (key.ptx ? "compute" : "sm") + std::to_string(key.sm);
}

bool is_name_part(const std::string& text) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

bool is_entry_name(const std::string& name) {
  return name.find(".tmp.") == std::string::npos &&
         (name.ends_with(".cubin") || name.ends_with(".ptx"));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Exclusive flock on <dir>/.lock for the object's lifetime (invariant 3).
class DirectoryLock {
 public:
  explicit DirectoryLock(const fs::path& dir) {
    const fs::path path = dir / ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw Error(path.string() + ": cannot open the store lock: " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        throw Error(path.string() + ": cannot lock the store: " + std::strerror(errno));
      }
    }
  }
  ~DirectoryLock() { ::close(fd_); }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

void write_durably(const fs::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path.string() + ": cannot create: " + std::strerror(errno));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      throw Error(path.string() + ": write failed: " + reason);
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) throw Error(path.string() + ": fsync failed: " + std::strerror(errno));
}

void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // durability of the rename is best effort; the entry is already whole
  ::fsync(fd);
  ::close(fd);
}

std::string unique_suffix() {
  std::random_device random;
  return ".tmp." + std::to_string(::getpid()) + "." + std::to_string(random());
}

int64_t age_seconds(const fs::path& path) {
  std::error_code error;
  const auto written = fs::last_write_time(path, error);
  if (error) return 0;
  const auto age = fs::file_time_type::clock::now() - written;
  return std::chrono::duration_cast<std::chrono::seconds>(age).count();
}

}  // namespace

std::string StoreKey::file_name() const {
  for (const std::string* part : {&family, &config, &nvrtc}) {
    if (!is_name_part(*part)) throw Error("kernel store: bad name part '" + *part + "'");
  }
  if (hash.size() != 64) throw Error("kernel store: key hash must be 64 hex digits");
  return family + "." + config + "." + hash.substr(0, 16) + "." + target_text(*this) + ".nvrtc" +
         nvrtc + ".v" + std::to_string(kStoreVersion) + (ptx ? ".ptx" : ".cubin");
}

// Layout in the table at the top of this file; a change MUST bump kStoreVersion.
std::string serialize_stored_kernel(const StoredKernel& kernel) {
  std::string payload;
  put_field(payload, kernel.key.hash);
  put_field(payload, kernel.key.family);
  put_field(payload, kernel.key.config);
  put_field(payload, target_text(kernel.key));
  put_field(payload, kernel.key.nvrtc);
  put_field(payload, kernel.binary);
  put_field(payload, kernel.log);
  put_field(payload, std::to_string(kernel.lowered_names.size()));
  for (const auto& [expression, lowered] : kernel.lowered_names) {
    put_field(payload, expression);
    put_field(payload, lowered);
  }
  std::string out(kMagic, sizeof kMagic);
  put_u32(out, kStoreVersion);
  put_u32(out, 0);
  put_u64(out, payload.size());
  const Sha256Digest digest = sha256(payload);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out + payload;
}

StoredKernel parse_stored_kernel(const std::string& bytes, const std::string& file_name) {
  if (bytes.size() < kHeaderBytes) throw Error(file_name + ": shorter than the header");
  if (bytes.compare(0, 8, kMagic, 8) != 0) throw Error(file_name + ": bad magic");
  const uint32_t version = get_u32(bytes, 8);
  if (version != kStoreVersion) {
    throw Error(file_name + ": format version " + std::to_string(version) + ", expected " +
                std::to_string(kStoreVersion));
  }
  if (get_u64(bytes, 16) != bytes.size() - kHeaderBytes) throw Error(file_name + ": bad length");
  const std::string_view payload = std::string_view(bytes).substr(kHeaderBytes);
  const Sha256Digest digest = sha256(payload);
  if (std::memcmp(digest.data(), bytes.data() + 24, 32) != 0) {
    throw Error(file_name + ": checksum mismatch");
  }
  FieldReader reader(bytes, kHeaderBytes, file_name);
  StoredKernel kernel;
  kernel.key.hash = reader.next();
  kernel.key.family = reader.next();
  kernel.key.config = reader.next();
  const std::string target = reader.next();
  kernel.key.ptx = target.starts_with("compute");
  const std::string sm_digits = target.substr(kernel.key.ptx ? 7 : 2);
  if (sm_digits.empty() || sm_digits.size() > 4 ||
      !std::all_of(sm_digits.begin(), sm_digits.end(), ::isdigit)) {
    throw Error(file_name + ": bad target '" + target + "'");
  }
  kernel.key.sm = std::stoi(sm_digits);
  kernel.key.nvrtc = reader.next();
  kernel.binary = reader.next();
  kernel.log = reader.next();
  const std::string count_text = reader.next();
  if (count_text.empty() || count_text.size() > 6 ||
      !std::all_of(count_text.begin(), count_text.end(), ::isdigit)) {
    throw Error(file_name + ": bad lowered-name count");
  }
  for (int i = 0, count = std::stoi(count_text); i < count; ++i) {
    std::string expression = reader.next();
    kernel.lowered_names.emplace_back(std::move(expression), reader.next());
  }
  if (!reader.at_end()) throw Error(file_name + ": bytes after the last field");
  return kernel;
}

KernelStore::KernelStore(KernelStoreOptions options) : options_(std::move(options)) {
  if (!options_.warn) {
    options_.warn = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  std::error_code error;
  fs::create_directories(options_.dir, error);
  if (error || !fs::is_directory(options_.dir)) {
    throw Error(options_.dir.string() +
                ": cannot create the kernel store folder: " + error.message());
  }
}

std::optional<StoredKernel> KernelStore::load(const StoreKey& key) const {
  const fs::path path = options_.dir / key.file_name();
  std::error_code error;
  if (!fs::exists(path, error)) return std::nullopt;
  const std::string bytes = read_file(path);
  try {
    StoredKernel kernel = parse_stored_kernel(bytes, path.string());
    if (kernel.key.hash != key.hash) throw Error(path.string() + ": holds a different key");
    ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // last use, for eviction order
    return kernel;
  } catch (const Error& corrupt) {
    fs::remove(path, error);
    options_.warn(std::string("q4jit: warning: ") + corrupt.what() +
                  "; corrupt compiled kernel removed, recompiling");
    return std::nullopt;
  }
}

void KernelStore::save(const StoredKernel& kernel) const {
  const std::string name = kernel.key.file_name();
  const fs::path path = options_.dir / name;
  const std::string bytes = serialize_stored_kernel(kernel);
  DirectoryLock lock(options_.dir);
  std::error_code error;
  if (fs::exists(path, error) && fs::file_size(path, error) == bytes.size() &&
      read_file(path) == bytes) {
    return;  // another process stored the same entry first
  }
  const fs::path temporary = options_.dir / (name + unique_suffix());
  try {
    write_durably(temporary, bytes);
  } catch (...) {
    fs::remove(temporary, error);
    throw;
  }
  fs::rename(temporary, path, error);
  if (error) {
    fs::remove(temporary, error);
    throw Error(path.string() + ": cannot rename the new entry into place: " + error.message());
  }
  sync_directory(options_.dir);
  evict_over_cap(name);
}

void KernelStore::evict_over_cap(const std::string& keep) const {
  struct Candidate {
    fs::path path;
    fs::file_time_type used;
    int64_t bytes;
  };
  std::vector<Candidate> candidates;
  int64_t total = 0;
  std::error_code error;
  const auto now = fs::file_time_type::clock::now();
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.dir, error)) {
    const std::string name = entry.path().filename().string();
    const auto used = entry.last_write_time(error);
    if (name.find(".tmp.") != std::string::npos && now - used > kStaleTemporary) {
      fs::remove(entry.path(), error);  // left by a crashed writer
      continue;
    }
    if (!is_entry_name(name)) continue;
    const int64_t bytes = static_cast<int64_t>(entry.file_size(error));
    total += bytes;
    if (name != keep) candidates.push_back({entry.path(), used, bytes});
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
  for (const Candidate& candidate : candidates) {
    if (total <= options_.size_cap_bytes) break;
    if (fs::remove(candidate.path, error)) total -= candidate.bytes;
  }
}

std::vector<StoreEntryInfo> KernelStore::list() const {
  std::vector<StoreEntryInfo> entries;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!is_entry_name(name)) continue;
    entries.push_back(
        {name, static_cast<int64_t>(entry.file_size(error)), age_seconds(entry.path())});
  }
  std::sort(entries.begin(), entries.end(), [](const StoreEntryInfo& a, const StoreEntryInfo& b) {
    return a.file_name < b.file_name;
  });
  return entries;
}

StoreStats KernelStore::stats() const {
  StoreStats stats;
  stats.dir = options_.dir;
  stats.size_cap_bytes = options_.size_cap_bytes;
  for (const StoreEntryInfo& entry : list()) {
    ++stats.entries;
    stats.bytes += entry.bytes;
  }
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.dir, error)) {
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) {
      ++stats.temporary_files;
    }
  }
  return stats;
}

int64_t KernelStore::clear() const {
  DirectoryLock lock(options_.dir);
  int64_t removed = 0;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.dir, error)) {
    const std::string name = entry.path().filename().string();
    if (is_entry_name(name) || name.find(".tmp.") != std::string::npos) {
      if (fs::remove(entry.path(), error)) ++removed;
    }
  }
  return removed;
}

fs::path default_kernel_store_dir(const std::string& override_dir) {
  if (!override_dir.empty()) return override_dir;
  if (const char* dir = std::getenv("Q4JIT_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    return fs::path(xdg) / "q4jit" / "kernels";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return fs::path(home) / ".cache" / "q4jit" / "kernels";
  }
  throw Error("kernel store: neither Q4JIT_CACHE_DIR, XDG_CACHE_HOME nor HOME is set")
      .with_hint("pass --cache-dir DIR");
}

}  // namespace q4jit
