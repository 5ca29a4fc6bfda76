// Assembles the store key of a compile request (compile_key.hpp).
#include "runtime/compile_key.hpp"

#include <algorithm>

#include "common/sha256.hpp"

namespace q4jit {

std::string compile_key(const CompileRequest& request, const Compiler& compiler) {
  Sha256 hash;
  hash.update_field("q4jit kernel store v" + std::to_string(kStoreVersion));
  hash.update_field(request.source.main.name).update_field(request.source.main.text);
  std::vector<const SourceFile*> headers;
  for (const SourceFile& header : request.source.headers) headers.push_back(&header);
  std::sort(headers.begin(), headers.end(),
            [](const SourceFile* a, const SourceFile* b) { return a->name < b->name; });
  hash.update_field(std::to_string(headers.size()));
  for (const SourceFile* header : headers)
    hash.update_field(header->name).update_field(header->text);
  hash.update_field(compiler.headers_version());
  hash.update_field(compiler.description());
  std::vector<std::string> options = compiler.key_options(request);
  std::sort(options.begin(), options.end());
  hash.update_field(std::to_string(options.size()));
  for (const std::string& option : options) hash.update_field(option);
  hash.update_field(request.family).update_field(request.config);
  hash.update_field(std::to_string(request.name_expressions.size()));
  for (const std::string& expression : request.name_expressions) hash.update_field(expression);
  return to_hex(hash.finish());
}

// The store's file names are NVIDIA-shaped (sm<N>.nvrtc<tag>); an AMD entry is sm0 with the
// architecture after the compiler's tag: "....sm0.nvrtchip5-2.gfx90a.v1.cubin". Only the hash
// decides identity (kernel_store.cpp, invariant 1), and it covers the architecture and HIP version.
StoreKey store_key(const CompileRequest& request, const Compiler& compiler,
                   const std::string& hash) {
  if (request.target.amd()) {
    return {request.family, request.config,
            hash,           0,
            false,          compiler.version_tag() + "." + request.target.gfx};
  }
  return {request.family,    request.config,     hash,
          request.target.sm, request.target.ptx, compiler.version_tag()};
}

}  // namespace q4jit
