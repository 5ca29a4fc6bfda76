// dlopen/dlsym wrapper (dynamic_library.hpp).
#include "runtime/cuda/dynamic_library.hpp"

#include <dlfcn.h>
#include <link.h>

#include <utility>

namespace q4jit {

DynamicLibrary::~DynamicLibrary() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

DynamicLibrary::DynamicLibrary(DynamicLibrary&& other) noexcept {
  *this = std::move(other);
}

DynamicLibrary& DynamicLibrary::operator=(DynamicLibrary&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) ::dlclose(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

DynamicLibrary DynamicLibrary::open_first(const std::vector<std::string>& candidates,
                                          std::string& tried) {
  DynamicLibrary library;
  for (const std::string& candidate : candidates) {
    void* handle = ::dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* reason = ::dlerror();
      tried += (tried.empty() ? "" : "; ") + std::string(reason ? reason : candidate);
      continue;
    }
    library.handle_ = handle;
    library.path_ = candidate;
    link_map* map = nullptr;
    if (::dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name &&
        *map->l_name) {
      library.path_ = map->l_name;
    }
    return library;
  }
  return library;
}

void* DynamicLibrary::symbol(const char* name) const {
  return handle_ == nullptr ? nullptr : ::dlsym(handle_, name);
}

}  // namespace q4jit
