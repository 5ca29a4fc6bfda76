// A read-only memory mapping of a whole file (RAII). Checkpoints are mapped, never read into
// buffers, so opening a sharded 7B folder costs page-table entries, not seconds.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace q4jit {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws Error "<path>: cannot open (<strerror>)" and the like.
  explicit MappedFile(const std::filesystem::path& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release();
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace q4jit
