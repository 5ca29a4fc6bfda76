// greedy_token: the argmax of one row of fp32 logits becomes the next decode step's input, in
// device memory: step[0] = the chosen id, step[1] (position) and step[2] (length) one further.
// The next step's graph reads those three, so greedy decoding queues its steps without waiting for
// the host (GpuEngine::decode_greedy). The host descriptor is greedy_token.hpp; the reference is
// the Sampler's argmax (model/sampling.hpp). Not here: sampling with temperature or filters (host).
//
// Ties:        the lowest id among equal maxima wins; NaN loses to every number, and among NaNs
//              the highest id wins: exactly the host scan's order, so both choose the same id.
// Geometry:    one block of kThreads threads (one launch per token: the row is V fp32 from L2,
//              the lm_head just wrote it), each thread's ids kThreads apart.
// Parameters:  kThreads 256, 512, 1024; they change nothing but speed.
#include "portable.cuh"

#include "q4jit_common.cuh"

namespace q4jit_greedy {

// A candidate: its logit and id (-1: none yet).
struct Candidate {
  float value;
  int id;
};

// Whether `a` beats `b` in the host scan's order (see Ties above).
__device__ __forceinline__ bool beats(const Candidate& a, const Candidate& b) {
  if (a.id < 0) return false;
  if (b.id < 0) return true;
  const bool a_nan = isnan(a.value), b_nan = isnan(b.value);
  if (a_nan || b_nan) return a_nan ? (b_nan && a.id > b.id) : true;
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

__device__ __forceinline__ Candidate warp_best(Candidate c) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const Candidate other{__shfl_xor_sync(0xffffffffu, c.value, offset),
                          __shfl_xor_sync(0xffffffffu, c.id, offset)};
    if (beats(other, c)) c = other;
  }
  return c;
}

}  // namespace q4jit_greedy

template <int kThreads = 1024>
__global__ void __launch_bounds__(kThreads)
    greedy_token_kernel(int* step, const float* logits, int V) {
  q4jit_device::grid_dependency_begin();
  static_assert(kThreads == 256 || kThreads == 512 || kThreads == 1024, "kThreads: 256 to 1024");
  using q4jit_greedy::Candidate;
  constexpr int kWarps = kThreads / 32;
  __shared__ Candidate warp_winners[kWarps];
  Candidate best{0.0f, -1};
  // Each thread scans its ids in increasing order: a later equal value never replaces an earlier.
  // kBurst loads go out before the first comparison: one round trip to L2 per kBurst ids, not one
  // per id (a 32000-row vocabulary: 4 round trips, not 32).
  constexpr int kBurst = 8;
  for (int base = threadIdx.x; base < V; base += kBurst * kThreads) {
    float values[kBurst];
#pragma unroll
    for (int b = 0; b < kBurst; ++b) {
      const int id = base + b * kThreads;
      values[b] = id < V ? logits[id] : 0.0f;
    }
#pragma unroll
    for (int b = 0; b < kBurst; ++b) {
      const int id = base + b * kThreads;
      if (id < V && q4jit_greedy::beats(Candidate{values[b], id}, best))
        best = Candidate{values[b], id};
    }
  }
  best = q4jit_greedy::warp_best(best);
  if (threadIdx.x % 32 == 0) warp_winners[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x >= 32) return;
  best = threadIdx.x < kWarps ? warp_winners[threadIdx.x] : Candidate{0.0f, -1};
  best = q4jit_greedy::warp_best(best);
  if (threadIdx.x == 0) {
    step[0] = best.id;
    step[1] += 1;
    step[2] += 1;
  }
}
