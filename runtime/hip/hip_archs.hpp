// The AMD GPU architectures q4jit compiles for with hiprtc, and their wavefront size. A table, not
// a query: hiprtc 5.2 (Debian's libamdhip64 5.2.3) aborts the whole process (munmap_chunk():
// invalid pointer) when asked for gfx940, gfx941, gfx942 or gfx1100..gfx1103, so an architecture
// must be known good before hiprtc sees it. Needs no HIP headers or library (the CLI parses
// --arch gfx... with it even in a build without HIP).
// Not here: compiling (hiprtc_compiler.hpp), devices (hip_backend.hpp).
#pragma once

#include <string>
#include <vector>

namespace q4jit {

struct HipArch {
  std::string name;       // "gfx90a": the --offload-arch value, without target features
  int wave_size = 64;     // threads per wavefront: 64 on GCN/CDNA (gfx9), 32 on RDNA (gfx10, gfx11)
  int min_hip_major = 5;  // oldest HIP major release whose hiprtc compiles it here
};

// Every architecture in the table, ascending by name within each generation.
const std::vector<HipArch>& hip_archs();

// "gfx90a" or "gfx90a:sramecc+:xnack-" (a device's gcnArchName) -> "gfx90a". Error when the text
// is not gfx followed by 3 or 4 hex digits.
std::string parse_gfx(const std::string& text);

// The architecture for `name` (target features allowed) under HIP major release `hip_major`.
// Error, one line, when the table lacks it or it needs a newer hiprtc, e.g.
// "gfx942: hiprtc 5.2 cannot compile for it (it aborts the process); supported: gfx900, ...".
HipArch find_hip_arch(const std::string& name, int hip_major, const std::string& hip_version);

// The names find_hip_arch accepts under `hip_major`, comma-separated.
std::string hip_arch_list(int hip_major);

}  // namespace q4jit
