// The store key of a compile request: SHA-256 over everything that changes the binary. Computed
// here (it needs the compiler's identity); cache/kernel_store.hpp only uses it.
#pragma once

#include <string>

#include "cache/kernel_store.hpp"
#include "runtime/compile_types.hpp"
#include "runtime/compiler.hpp"

namespace q4jit {

// 64 hex digits over: kStoreVersion, the template's name and bytes, each included embedded
// header's name and bytes (sorted by name), the platform headers' version, the compiler version
// (NVRTC's, or the HIP version for hiprtc), the sorted key options (architecture included),
// family, config and the name expressions.
std::string compile_key(const CompileRequest& request, const Compiler& compiler);

// The store key for a request whose hash is `hash`.
StoreKey store_key(const CompileRequest& request, const Compiler& compiler,
                   const std::string& hash);

}  // namespace q4jit
