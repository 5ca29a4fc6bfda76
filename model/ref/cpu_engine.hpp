// The CPU reference forward pass of Llama in fp32: the specification every GPU kernel is checked
// against. Plain loops (OpenMP across output rows), no intrinsics; GPTQ weights are dequantized
// once at construction with dequantize_gptq, exactly as the format defines them.
//
// Letters: T = tokens in this call, P = positions in the cache, C = hidden, H = heads, Hkv = KV
// heads, D = head_dim, F = intermediate, V = vocab.
#pragma once

#include <memory>
#include <vector>

#include "model/engine.hpp"
#include "model/weights.hpp"

namespace q4jit {

class CpuEngine : public Engine {
 public:
  // max_positions <= 0 means config.max_position_embeddings.
  explicit CpuEngine(const Model& model, int max_positions = 0);
  ~CpuEngine() override;

  const LlamaConfig& config() const override;
  std::string device_name() const override { return "cpu"; }
  int max_positions() const override;
  int position() const override;
  void reset() override;
  std::vector<float> forward(std::span<const int32_t> tokens, bool all_logits) override;
  // Host bytes: the fp32 weights as dequantized, the fp32 KV cache, the activations of the last
  // call.
  MemoryUse memory_use() const override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The reference ops, exposed for kernel tests (each a few plain loops; shapes in comments).
namespace ref {
// y[M, N] = x[M, K] W^T, W [N, K]
void matmul(const float* x, const float* W, float* y, int M, int K, int N);
// y[M, C] = x / rms(x) * weight
void rms_norm(const float* x, const float* weight, float* y, int M, int C, float eps);
// In place on x [T, heads, D] at positions pos[0..T): rotate-half, theta, linear scaling factor.
void rope(float* x, const int* positions, int T, int heads, int D, float theta, float scale);
// out[T, C] = silu(gate) * up
void silu_mul(const float* gate, const float* up, float* out, size_t count);
// out[T, H, D] = causal softmax(q k^T / sqrt(D)) v for queries q [T, H, D] at positions
// first_position .. first_position+T-1, over key_cache/value_cache [P, Hkv, D] holding positions
// 0 .. first_position+T-1. Query head h reads KV head h / (H / Hkv) (GQA).
void attention(const float* q, const float* key_cache, const float* value_cache, float* out, int T,
               int first_position, int H, int Hkv, int D);
}  // namespace ref

}  // namespace q4jit
