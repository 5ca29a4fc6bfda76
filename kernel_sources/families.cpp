// The list of kernel families. Adding a family: its <family>.cu/.hpp/.cpp in kernel_sources/ and
// one line below (kernel_sources/README.md).
#include "common/error.hpp"
#include "kernel_sources/attention_decode.hpp"
#include "kernel_sources/attention_prefill.hpp"
#include "kernel_sources/attention_prefill_mma.hpp"
#include "kernel_sources/dequantize_q4.hpp"
#include "kernel_sources/elementwise.hpp"
#include "kernel_sources/embedding.hpp"
#include "kernel_sources/family.hpp"
#include "kernel_sources/gemm_f16.hpp"
#include "kernel_sources/greedy_token.hpp"
#include "kernel_sources/lm_head.hpp"
#include "kernel_sources/q4_matmul.hpp"
#include "kernel_sources/q4_mma.hpp"
#include "kernel_sources/rms_norm.hpp"
#include "kernel_sources/rope_cache.hpp"

namespace q4jit {

std::vector<KernelFamily> kernel_families() {
  return {
      rms_norm_family(),
      embedding_family(),
      rope_cache_family(),
      attention_decode_family(),
      attention_prefill_family(),
      attention_prefill_mma_family(),
      silu_mul_family(),
      residual_add_family(),
      logits_f32_family(),
      lm_head_family(),
      greedy_token_family(),
      q4_matmul_family(),
      q4_mma_family(),
      dequantize_q4_family(),
      gemm_f16_family(),
  };
}

KernelFamily find_kernel_family(const std::string& name) {
  std::string known;
  for (KernelFamily& family : kernel_families()) {
    if (family.name == name) return family;
    known += (known.empty() ? "" : ", ") + family.name;
  }
  throw Error("kernel family '" + name + "': unknown (known: " + known + ")");
}

}  // namespace q4jit
