// The reference ops of the Llama forward, fp32: matmul, RMSNorm, rotary embedding, SwiGLU.
// Attention lives in attention.cpp, the forward pass that calls these in cpu_engine.cpp.
//
// Letters: M = rows (tokens), K = in_features, N = out_features, T = tokens, D = head_dim.
// Plain loops; the only concessions to speed are OpenMP across output rows and, in matmul, a
// blocking that reads each weight row once per 4 tokens (prefill over 2048 tokens is CI's
// perplexity run). Sums are fp32 with partial sums per SIMD lane (no -ffast-math needed).
#include <algorithm>
#include <cmath>

#include "model/ref/cpu_engine.hpp"

namespace q4jit::ref {

namespace {

// Tokens that share one pass over the weights: the activations of this many tokens stay in L2
// while every weight row streams past them once.
constexpr int kTokenTile = 32;

// Multiply-adds (or elements) below which a parallel region costs more than it saves: decode
// runs ~100 ops per token, and waking threads for a 512-element norm only adds latency.
constexpr size_t kParallelWork = size_t(1) << 15;
// The same for matmul. A decode step (one token) stays on one thread: its matmuls take tens of
// microseconds, and on a busy machine (CI running suites side by side) OpenMP's spinning barriers
// turned a 7 ms token into 400 ms. Prefill, where the time is, stays parallel.
constexpr size_t kParallelMatmulWork = size_t(1) << 22;

// y[m, n], y[m, n+1] for the 4 tokens m .. m+3: each weight element loaded once, used 4 times.
void dot_2rows_4tokens(const float* w0, const float* w1, const float* x, float* y, int K, int N) {
  const float* x0 = x;          // [K]
  const float* x1 = x + K;      // [K]
  const float* x2 = x + 2 * K;  // [K]
  const float* x3 = x + 3 * K;  // [K]
  float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
#pragma omp simd reduction(+ : s00, s01, s02, s03, s10, s11, s12, s13)
  for (int k = 0; k < K; ++k) {
    s00 += w0[k] * x0[k];
    s01 += w0[k] * x1[k];
    s02 += w0[k] * x2[k];
    s03 += w0[k] * x3[k];
    s10 += w1[k] * x0[k];
    s11 += w1[k] * x1[k];
    s12 += w1[k] * x2[k];
    s13 += w1[k] * x3[k];
  }
  y[0] = s00, y[N] = s01, y[2 * N] = s02, y[3 * N] = s03;
  y[1] = s10, y[N + 1] = s11, y[2 * N + 1] = s12, y[3 * N + 1] = s13;
}

float dot(const float* a, const float* b, int K) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int k = 0; k < K; ++k) sum += a[k] * b[k];
  return sum;
}

// y[m0 .. m0+rows, n] for one output row n.
void dot_1row(const float* w, const float* x, float* y, int rows, int K, int N) {
  for (int m = 0; m < rows; ++m) y[size_t(m) * N] = dot(w, x + size_t(m) * K, K);
}

}  // namespace

void matmul(const float* x, const float* W, float* y, int M, int K, int N) {
  for (int m0 = 0; m0 < M; m0 += kTokenTile) {
    const int rows = std::min(kTokenTile, M - m0);  // tokens in this tile
    const int rows4 = rows / 4 * 4;                 // of which in groups of 4
    const float* x_tile = x + size_t(m0) * K;       // [rows, K]
    float* y_tile = y + size_t(m0) * N;             // [rows, N]
#pragma omp parallel for schedule(static) if (size_t(rows) * K * N >= kParallelMatmulWork)
    for (int pair = 0; pair < (N + 1) / 2; ++pair) {
      const int n = 2 * pair;
      const float* w0 = W + size_t(n) * K;  // [K]
      if (n + 1 == N) {                     // odd N: the last row alone
        dot_1row(w0, x_tile, y_tile + n, rows, K, N);
        continue;
      }
      for (int m = 0; m < rows4; m += 4) {
        dot_2rows_4tokens(w0, w0 + K, x_tile + size_t(m) * K, y_tile + size_t(m) * N + n, K, N);
      }
      const float* x_rest = x_tile + size_t(rows4) * K;  // [rows - rows4, K]
      float* y_rest = y_tile + size_t(rows4) * N;
      dot_1row(w0, x_rest, y_rest + n, rows - rows4, K, N);
      dot_1row(w0 + K, x_rest, y_rest + n + 1, rows - rows4, K, N);
    }
  }
}

void rms_norm(const float* x, const float* weight, float* y, int M, int C, float eps) {
#pragma omp parallel for schedule(static) if (size_t(M) * C >= kParallelWork)
  for (int m = 0; m < M; ++m) {
    const float* row = x + size_t(m) * C;  // [C]
    float* out = y + size_t(m) * C;        // [C]
    float sum_squares = 0;
#pragma omp simd reduction(+ : sum_squares)
    for (int c = 0; c < C; ++c) sum_squares += row[c] * row[c];
    const float inverse_rms = 1.0f / std::sqrt(sum_squares / float(C) + eps);
    for (int c = 0; c < C; ++c) out[c] = weight[c] * (row[c] * inverse_rms);
  }
}

// Angles in fp32 the way Hugging Face computes them (inv_freq in fp32, divided by the linear
// factor, times the position), so that long positions round the same way.
void rope(float* x, const int* positions, int T, int heads, int D, float theta, float scale) {
  const int half = D / 2;
#pragma omp parallel for schedule(static) if (size_t(T) * heads * D >= kParallelWork)
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < half; ++i) {
      const float inv_freq = 1.0f / std::pow(theta, float(2 * i) / float(D)) / scale;
      const float angle = float(positions[t]) * inv_freq;
      const float cos_angle = std::cos(angle);
      const float sin_angle = std::sin(angle);
      for (int h = 0; h < heads; ++h) {
        float* head = x + (size_t(t) * heads + h) * D;  // [D]: i pairs with i + D/2
        const float first = head[i];
        const float second = head[i + half];
        head[i] = first * cos_angle - second * sin_angle;
        head[i + half] = second * cos_angle + first * sin_angle;
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, float* out, size_t count) {
#pragma omp parallel for schedule(static) if (count >= kParallelWork)
  for (size_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace q4jit::ref
