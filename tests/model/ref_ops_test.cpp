// The reference ops (model/ref/) against separate naive formulas in double on random data:
// matmul at awkward shapes, RMSNorm, RoPE against the rotate-half definition (with linear
// scaling), SwiGLU, and attention (causal, over a partly filled cache, GQA equal to explicitly
// repeated K/V heads). The engine built from these ops is tested in cpu_engine_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <vector>

#include "model/ref/cpu_engine.hpp"

namespace q4jit {
namespace {

std::vector<float> random_values(size_t count, uint32_t seed, float low = -1, float high = 1) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(count);
  for (float& value : values) value = distribution(generator);
  return values;
}

// ||a - b|| / ||b||.
double relative_error(const std::vector<float>& actual, const std::vector<double>& expected) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    difference += (actual[i] - expected[i]) * (actual[i] - expected[i]);
    norm += expected[i] * expected[i];
  }
  return std::sqrt(difference / norm);
}

struct MatmulShape {
  int M, K, N;
};
void PrintTo(const MatmulShape& shape, std::ostream* out) {
  *out << "M" << shape.M << "_K" << shape.K << "_N" << shape.N;
}

class RefMatmul : public testing::TestWithParam<MatmulShape> {};

TEST_P(RefMatmul, MatchesNaiveSum) {
  const auto [M, K, N] = GetParam();
  const std::vector<float> x = random_values(size_t(M) * K, 1);  // [M, K]
  const std::vector<float> W = random_values(size_t(N) * K, 2);  // [N, K]
  std::vector<float> y(size_t(M) * N, -7.0f);                    // [M, N]
  ref::matmul(x.data(), W.data(), y.data(), M, K, N);
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      double sum = 0, magnitude = 0;
      for (int k = 0; k < K; ++k) {
        sum += double(x[size_t(m) * K + k]) * W[size_t(n) * K + k];
        magnitude += std::abs(double(x[size_t(m) * K + k]) * W[size_t(n) * K + k]);
      }
      // fp32 accumulation: error bounded by a few ulps of the sum of magnitudes.
      ASSERT_NEAR(y[size_t(m) * N + n], sum, 1e-6 * magnitude + 1e-7) << "m=" << m << " n=" << n;
    }
  }
}

// Tails of every blocking: M not a multiple of 4 or of the token tile, odd N, K not a multiple
// of the vector width.
INSTANTIATE_TEST_SUITE_P(AwkwardShapes, RefMatmul,
                         testing::Values(MatmulShape{1, 1, 1}, MatmulShape{1, 512, 7},
                                         MatmulShape{3, 7, 5}, MatmulShape{4, 64, 2},
                                         MatmulShape{5, 13, 9}, MatmulShape{37, 130, 17},
                                         MatmulShape{70, 33, 64}, MatmulShape{33, 1408, 3}),
                         [](const auto& info) { return testing::PrintToString(info.param); });

TEST(RefOps, RmsNormMatchesDefinition) {
  const int M = 5, C = 300;
  const float eps = 1e-5f;
  const std::vector<float> x = random_values(size_t(M) * C, 3, -3, 3);
  const std::vector<float> weight = random_values(C, 4, 0.5f, 1.5f);
  std::vector<float> y(x.size());
  ref::rms_norm(x.data(), weight.data(), y.data(), M, C, eps);
  std::vector<double> expected(x.size());
  for (int m = 0; m < M; ++m) {
    double mean_square = 0;
    for (int c = 0; c < C; ++c) mean_square += double(x[m * C + c]) * x[m * C + c] / C;
    for (int c = 0; c < C; ++c) {
      expected[m * C + c] = weight[c] * x[m * C + c] / std::sqrt(mean_square + eps);
    }
  }
  EXPECT_LT(relative_error(y, expected), 1e-6);
}

TEST(RefOps, SiluMulMatchesDefinition) {
  const std::vector<float> gate = random_values(1001, 5, -8, 8);
  const std::vector<float> up = random_values(1001, 6);
  std::vector<float> out(gate.size());
  ref::silu_mul(gate.data(), up.data(), out.data(), gate.size());
  std::vector<double> expected(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    expected[i] = gate[i] / (1 + std::exp(-double(gate[i]))) * up[i];
  }
  EXPECT_LT(relative_error(out, expected), 1e-6);
}

// Rotate-half computed directly: out = x * cos + rotate_half(x) * sin, where rotate_half(x) is
// (-x[D/2..D), x[0..D/2)) and the angle of pair i is (position / factor) * theta^(-2i/D).
void expect_rope_matches_definition(float scale) {
  const int T = 6, heads = 3, D = 16;
  const float theta = 10000.0f;
  const std::vector<int> positions{0, 1, 2, 17, 1000, 4095};
  const std::vector<float> x = random_values(size_t(T) * heads * D, 7);
  std::vector<float> y = x;
  ref::rope(y.data(), positions.data(), T, heads, D, theta, scale);
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* in = x.data() + (t * heads + h) * D;
      const float* out = y.data() + (t * heads + h) * D;
      for (int d = 0; d < D; ++d) {
        const int i = d % (D / 2);
        const double angle = positions[t] / double(scale) * std::pow(double(theta), -2.0 * i / D);
        const double rotated = d < D / 2 ? -double(in[d + D / 2]) : double(in[d - D / 2]);
        const double expected = in[d] * std::cos(angle) + rotated * std::sin(angle);
        // The angle is formed in fp32 (as Hugging Face does): error ~ 1e-7 * position.
        ASSERT_NEAR(out[d], expected, 2e-7 * (positions[t] + 8))
            << "t=" << t << " h=" << h << " d=" << d << " scale=" << scale;
      }
    }
  }
}

TEST(RefOps, RopeIsRotateHalf) {
  expect_rope_matches_definition(1.0f);
}
TEST(RefOps, RopeLinearScalingDividesPositions) {
  expect_rope_matches_definition(4.0f);
}

// Naive causal GQA attention in double: queries [T, H, D] at positions first .. first+T-1 over
// a cache [first+T, Hkv, D].
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& keys,
                                    const std::vector<float>& values, int T, int first, int H,
                                    int Hkv, int D) {
  std::vector<double> out(size_t(T) * H * D, 0.0);
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const int kv = h / (H / Hkv);
      const int count = first + t + 1;
      std::vector<double> scores(count);
      double maximum = -1e300, sum = 0;
      for (int p = 0; p < count; ++p) {
        double dot = 0;
        for (int d = 0; d < D; ++d) {
          dot += double(q[(t * H + h) * D + d]) * keys[(p * Hkv + kv) * D + d];
        }
        scores[p] = dot / std::sqrt(double(D));
        maximum = std::max(maximum, scores[p]);
      }
      for (double& score : scores) sum += (score = std::exp(score - maximum));
      for (int p = 0; p < count; ++p) {
        for (int d = 0; d < D; ++d) {
          out[(t * H + h) * D + d] += scores[p] / sum * values[(p * Hkv + kv) * D + d];
        }
      }
    }
  }
  return out;
}

struct AttentionCase {
  int T, first, H, Hkv, D;
};
void PrintTo(const AttentionCase& c, std::ostream* out) {
  *out << "T" << c.T << "_first" << c.first << "_H" << c.H << "_Hkv" << c.Hkv << "_D" << c.D;
}

class RefAttention : public testing::TestWithParam<AttentionCase> {};

TEST_P(RefAttention, MatchesNaiveCausalSoftmax) {
  const auto [T, first, H, Hkv, D] = GetParam();
  const int P = first + T;
  const std::vector<float> q = random_values(size_t(T) * H * D, 8, -2, 2);       // [T, H, D]
  const std::vector<float> keys = random_values(size_t(P) * Hkv * D, 9, -2, 2);  // [P, Hkv, D]
  const std::vector<float> values = random_values(size_t(P) * Hkv * D, 10);      // [P, Hkv, D]
  std::vector<float> out(q.size(), -7.0f);
  ref::attention(q.data(), keys.data(), values.data(), out.data(), T, first, H, Hkv, D);
  EXPECT_LT(relative_error(out, naive_attention(q, keys, values, T, first, H, Hkv, D)), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RefAttention,
                         testing::Values(AttentionCase{1, 0, 2, 1, 8},    // first token
                                         AttentionCase{1, 40, 8, 4, 64},  // decode
                                         AttentionCase{7, 0, 4, 2, 16},   // prefill, tail block
                                         AttentionCase{13, 5, 6, 3, 32},  // chunk after a prefix
                                         AttentionCase{9, 3, 4, 4, 8}),   // no GQA
                         [](const auto& info) { return testing::PrintToString(info.param); });

// GQA reads KV head h / (H / Hkv) in place; the result must equal running with every KV head
// copied out once per query head that uses it.
TEST(RefOps, AttentionGqaEqualsRepeatedKvHeads) {
  const int T = 11, first = 6, H = 8, Hkv = 2, D = 32, P = first + T;
  const std::vector<float> q = random_values(size_t(T) * H * D, 11, -2, 2);
  const std::vector<float> keys = random_values(size_t(P) * Hkv * D, 12, -2, 2);
  const std::vector<float> values = random_values(size_t(P) * Hkv * D, 13);
  std::vector<float> repeated_keys(size_t(P) * H * D), repeated_values(size_t(P) * H * D);
  for (int p = 0; p < P; ++p) {
    for (int h = 0; h < H; ++h) {
      for (int d = 0; d < D; ++d) {
        const size_t from = (size_t(p) * Hkv + h / (H / Hkv)) * D + d;
        repeated_keys[(size_t(p) * H + h) * D + d] = keys[from];
        repeated_values[(size_t(p) * H + h) * D + d] = values[from];
      }
    }
  }
  std::vector<float> grouped(q.size()), repeated(q.size());
  ref::attention(q.data(), keys.data(), values.data(), grouped.data(), T, first, H, Hkv, D);
  ref::attention(q.data(), repeated_keys.data(), repeated_values.data(), repeated.data(), T, first,
                 H, H, D);
  for (size_t i = 0; i < q.size(); ++i) {
    ASSERT_NEAR(grouped[i], repeated[i], 1e-6f * (1 + std::abs(repeated[i]))) << "index " << i;
  }
}

}  // namespace
}  // namespace q4jit
