// The architecture table and its lookups (hip_archs.hpp).
#include "runtime/hip/hip_archs.hpp"

#include <algorithm>
#include <cctype>

#include "common/error.hpp"

namespace q4jit {

// HIP 5 entries: each compiled every supported family's default with Debian's hiprtc 5.2.3 (the
// CI step of scripts/test.sh covers gfx908, gfx90a and gfx1030). HIP 6 entries (MI300, RDNA3)
// are what hiprtc 5.2 aborts on; AMD ships them from ROCm 6, which was not available here to
// test, so they are accepted only from HIP 6 on.
const std::vector<HipArch>& hip_archs() {
  static const std::vector<HipArch> kArchs = {
      {"gfx900", 64, 5},  {"gfx902", 64, 5},  {"gfx904", 64, 5},  {"gfx906", 64, 5},
      {"gfx908", 64, 5},  {"gfx909", 64, 5},  {"gfx90a", 64, 5},  {"gfx90c", 64, 5},
      {"gfx1010", 32, 5}, {"gfx1011", 32, 5}, {"gfx1012", 32, 5}, {"gfx1030", 32, 5},
      {"gfx1031", 32, 5}, {"gfx1032", 32, 5}, {"gfx1033", 32, 5}, {"gfx1034", 32, 5},
      {"gfx1035", 32, 5}, {"gfx1036", 32, 5}, {"gfx940", 64, 6},  {"gfx942", 64, 6},
      {"gfx1100", 32, 6}, {"gfx1101", 32, 6}, {"gfx1102", 32, 6},
  };
  return kArchs;
}

std::string parse_gfx(const std::string& text) {
  const std::string name = text.substr(0, text.find(':'));
  const std::string digits = name.starts_with("gfx") ? name.substr(3) : "";
  const bool hex = (digits.size() == 3 || digits.size() == 4) &&
                   std::all_of(digits.begin(), digits.end(), [](char c) {
                     return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
                   });
  if (!hex) throw Error("architecture '" + text + "': expected gfxXYZ, e.g. gfx90a or gfx1030");
  return name;
}

std::string hip_arch_list(int hip_major) {
  std::string list;
  for (const HipArch& arch : hip_archs()) {
    if (arch.min_hip_major <= hip_major) list += (list.empty() ? "" : ", ") + arch.name;
  }
  return list;
}

HipArch find_hip_arch(const std::string& name, int hip_major, const std::string& hip_version) {
  const std::string base = parse_gfx(name);
  const auto& archs = hip_archs();
  const auto found = std::find_if(archs.begin(), archs.end(),
                                  [&](const HipArch& arch) { return arch.name == base; });
  if (found != archs.end() && found->min_hip_major <= hip_major) return *found;
  const std::string why = found != archs.end()
                              ? "hiprtc " + hip_version +
                                    " cannot compile for it (it aborts the "
                                    "process; HIP " +
                                    std::to_string(found->min_hip_major) + " or newer can)"
                              : "not among the architectures q4jit compiles for";
  throw Error(base + ": " + why + "; supported: " + hip_arch_list(hip_major));
}

}  // namespace q4jit
