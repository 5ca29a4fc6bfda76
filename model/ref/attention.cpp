// The reference attention, fp32: causal, grouped-query (GQA), over a KV cache. Not the cache
// itself (cpu_engine.cpp owns it) nor RoPE (ops.cpp, applied before the keys enter the cache).
//
// Letters: T = queries in this call, P = positions attended, H = heads, Hkv = KV heads,
// D = head_dim. Query head h reads KV head h / (H / Hkv) in place: K and V are never copied per
// head. Softmax in fp32 with the maximum subtracted. Queries are taken 4 at a time (same head,
// consecutive positions) so that each cached key and value row is read once per 4 queries.
#include <algorithm>
#include <cmath>
#include <vector>

#include "model/ref/cpu_engine.hpp"

namespace q4jit::ref {

namespace {

constexpr int kQueryBlock = 4;

struct HeadLayout {
  int H, Hkv, D;
  size_t query_stride() const { return size_t(H) * D; }    // between tokens of q and out
  size_t cache_stride() const { return size_t(Hkv) * D; }  // between positions of the cache
};

// scores[j, p] = q_j . k_p / sqrt(D) for the queries j of the block and keys p < key_count.
void block_scores(const float* const* queries, int count, const float* keys, int key_count,
                  const HeadLayout& layout, float* scores, int score_stride) {
  const int D = layout.D;
  const float scale = 1.0f / std::sqrt(float(D));
  // A partial block repeats its last query so that every block runs the same 4-query loop.
  const float* q0 = queries[0];                       // [D]
  const float* q1 = queries[std::min(1, count - 1)];  // [D]
  const float* q2 = queries[std::min(2, count - 1)];  // [D]
  const float* q3 = queries[std::min(3, count - 1)];  // [D]
  for (int p = 0; p < key_count; ++p) {
    const float* key = keys + p * layout.cache_stride();  // [D]
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int d = 0; d < D; ++d) {
      s0 += q0[d] * key[d];
      s1 += q1[d] * key[d];
      s2 += q2[d] * key[d];
      s3 += q3[d] * key[d];
    }
    const float sums[kQueryBlock] = {s0, s1, s2, s3};
    for (int j = 0; j < count; ++j) scores[j * score_stride + p] = sums[j] * scale;
  }
}

// In place on scores[0 .. count): exp(s - max) / sum.
void softmax(float* scores, int count) {
  float maximum = scores[0];
  for (int p = 1; p < count; ++p) maximum = std::max(maximum, scores[p]);
  float sum = 0;
  for (int p = 0; p < count; ++p) {
    scores[p] = std::exp(scores[p] - maximum);
    sum += scores[p];
  }
  for (int p = 0; p < count; ++p) scores[p] /= sum;
}

// outputs[j] = sum_p probabilities[j, p] v_p over the first key_counts[j] keys.
void block_values(const float* probabilities, int score_stride, const int* key_counts, int count,
                  const float* values, const HeadLayout& layout, float* const* outputs) {
  const int D = layout.D;
  for (int j = 0; j < count; ++j) std::fill(outputs[j], outputs[j] + D, 0.0f);
  int p = 0;
  if (count == kQueryBlock) {  // keys every query of the block sees: each value row read once
    float* o0 = outputs[0];    // [D]
    float* o1 = outputs[1];    // [D]
    float* o2 = outputs[2];    // [D]
    float* o3 = outputs[3];    // [D]
    for (; p < key_counts[0]; ++p) {
      const float* value = values + p * layout.cache_stride();  // [D]
      const float p0 = probabilities[p], p1 = probabilities[score_stride + p];
      const float p2 = probabilities[2 * score_stride + p];
      const float p3 = probabilities[3 * score_stride + p];
#pragma omp simd
      for (int d = 0; d < D; ++d) {
        o0[d] += p0 * value[d];
        o1[d] += p1 * value[d];
        o2[d] += p2 * value[d];
        o3[d] += p3 * value[d];
      }
    }
  }
  for (; p < key_counts[count - 1]; ++p) {
    const float* value = values + p * layout.cache_stride();  // [D]
    for (int j = 0; j < count; ++j) {
      if (p >= key_counts[j]) continue;  // causal: query j sees positions <= its own
      const float probability = probabilities[j * score_stride + p];
      float* out = outputs[j];  // [D]
#pragma omp simd
      for (int d = 0; d < D; ++d) out[d] += probability * value[d];
    }
  }
}

}  // namespace

void attention(const float* q, const float* key_cache, const float* value_cache, float* out, int T,
               int first_position, int H, int Hkv, int D) {
  const HeadLayout layout{H, Hkv, D};
  const int heads_per_kv = H / Hkv;
  const int blocks = (T + kQueryBlock - 1) / kQueryBlock;
  const int P = first_position + T;  // positions in the cache after this call
  // Below this many multiply-adds one thread finishes before others would wake (short decode).
  constexpr size_t kParallelWork = size_t(1) << 16;
#pragma omp parallel if (size_t(T) * P * H * D >= kParallelWork)
  {
    std::vector<float> scores(size_t(kQueryBlock) * P);  // [kQueryBlock, P], this thread's
#pragma omp for schedule(dynamic) collapse(2)
    for (int h = 0; h < H; ++h) {
      for (int block = 0; block < blocks; ++block) {
        const int t0 = block * kQueryBlock;
        const int count = std::min(kQueryBlock, T - t0);
        const float* queries[kQueryBlock];  // each [D]
        float* outputs[kQueryBlock];        // each [D]
        int key_counts[kQueryBlock];
        for (int j = 0; j < count; ++j) {
          queries[j] = q + (t0 + j) * layout.query_stride() + size_t(h) * D;
          outputs[j] = out + (t0 + j) * layout.query_stride() + size_t(h) * D;
          key_counts[j] = first_position + t0 + j + 1;
        }
        const size_t kv_offset = size_t(h / heads_per_kv) * D;
        block_scores(queries, count, key_cache + kv_offset, key_counts[count - 1], layout,
                     scores.data(), P);
        for (int j = 0; j < count; ++j) softmax(scores.data() + size_t(j) * P, key_counts[j]);
        block_values(scores.data(), P, key_counts, count, value_cache + kv_offset, layout, outputs);
      }
    }
  }
}

}  // namespace q4jit::ref
