// An owned dlopen handle, and opening the first of several candidate library names while keeping
// what each attempt said (for one-line "not found" explanations). POSIX only.
#pragma once

#include <string>
#include <vector>

namespace q4jit {

class DynamicLibrary {
 public:
  DynamicLibrary() = default;
  ~DynamicLibrary();
  DynamicLibrary(DynamicLibrary&& other) noexcept;
  DynamicLibrary& operator=(DynamicLibrary&& other) noexcept;
  DynamicLibrary(const DynamicLibrary&) = delete;
  DynamicLibrary& operator=(const DynamicLibrary&) = delete;

  // The first candidate that opens. On failure the library is empty and `tried` says, per
  // candidate, what dlerror reported.
  static DynamicLibrary open_first(const std::vector<std::string>& candidates, std::string& tried);

  explicit operator bool() const { return handle_ != nullptr; }
  void* symbol(const char* name) const;  // nullptr when absent
  // The file actually opened (resolved through the loader), or the name asked for.
  const std::string& path() const { return path_; }

 private:
  void* handle_ = nullptr;
  std::string path_;
};

}  // namespace q4jit
