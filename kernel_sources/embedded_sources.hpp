// The kernel templates and headers of kernel_sources/, embedded into the binary at build time
// (embed_kernel_sources.cmake writes the table with each file's bytes and SHA-256), and the
// resolution of `#include "..."` between them. Not the compiler: runtime/ hands these to NVRTC.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace q4jit {

struct EmbeddedFile {
  std::string_view name;    // file name without folder: "rms_norm.cu"
  std::string_view bytes;   // the file's exact bytes
  std::string_view sha256;  // hex SHA-256 of bytes, computed by CMake at build time
};

// Every embedded file, sorted by name.
std::span<const EmbeddedFile> embedded_files();
// The file called `name`, or nullptr.
const EmbeddedFile* find_embedded_file(std::string_view name);
// The names in `#include "name"` lines of `text` (angle-bracket includes are the toolkit's).
std::vector<std::string> quoted_includes(std::string_view text);
// The embedded files that `root` includes, directly or through other embedded files, sorted by
// name, each once, root excluded. Quoted includes not in the embedded set are an Error naming the
// including file.
std::vector<const EmbeddedFile*> embedded_includes(const EmbeddedFile& root);

}  // namespace q4jit
