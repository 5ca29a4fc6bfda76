// The type-erased view of a kernel family that generic code uses (`q4jit kernels compile`, the
// compiler service's tests, later the tuner): which embedded source holds it, its tuning
// parameters, and its variants as (config string, name expression). Each family's own typed
// descriptor (e.g. rms_norm.hpp) produces this; kernel_families() in families.cpp lists them all.
#pragma once

#include <string>
#include <vector>

namespace q4jit {

// One tuning parameter: its name as it appears in config strings, the values it may take, and
// the constraints beyond that list in words (the code of legal() is the authority).
struct TuningParameter {
  std::string name;
  std::vector<int> values;
  std::string constraints;
};

// One instantiation of a family's template.
struct KernelVariant {
  std::string config;           // canonical config string, e.g. "bt256.vw8.sr0"
  std::string name_expression;  // e.g. "rms_norm_kernel<256, 8, false>"
};

struct KernelFamily {
  std::string name;    // "rms_norm": stem of the files and of the store's file names
  std::string source;  // embedded file holding the kernels: "rms_norm.cu"
  std::vector<TuningParameter> parameters;
  std::vector<KernelVariant> default_variants;  // what a load compiles before any tuning
  std::vector<KernelVariant> all_variants;      // the whole space, shape-independent part
  // Oldest architecture the kernels compile for (mma.sync and cp.async need sm_80). Compiling
  // for an older target is refused by the caller, not attempted.
  int min_sm = 75;
  // Whether the kernels compile for AMD GPUs with hiprtc (through portable.cuh). False for
  // families built on NVIDIA-only instructions (mma.sync, ldmatrix, cp.async): compiling them
  // for a gfx target is refused by the caller, like an old sm, and AMD gets the SIMT paths.
  bool amd = true;
  // Name expressions starting with this prefix use instructions of exactly one architecture,
  // arch_specific_sm (wgmma: sm_90a): for that target they compile as "sm_90a", in programs of
  // their own (target_for_expression, runtime/kernel_service.hpp); for any other target they
  // compile to a body that traps, and legal() never lets them run there.
  std::string arch_specific_prefix;
  int arch_specific_sm = 0;

  bool supports(int sm) const { return sm >= min_sm; }
};

// Every kernel family in kernel_sources/, in a fixed order.
std::vector<KernelFamily> kernel_families();
// The family called `name`; Error listing the known families when there is none.
KernelFamily find_kernel_family(const std::string& name);

}  // namespace q4jit
