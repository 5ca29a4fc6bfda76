// The distinct GPTQ matmul shapes of a model folder, read from config.json and the tensors'
// headers (no weight is loaded): q, k, v, o, gate, up, down with K, N, group size and act-order,
// plus the fused qkv and gate_up shapes where the fused projections share their act-order
// permutation (a fused kernel gathers x once, so the permutations must be equal). Shapes are the
// problems the GPU engine runs: act-order projections run on their sorted rows with sorted x,
// so they are listed (and tuned) with act_order false.
// Not here: tuning them (autotuner.hpp).
#pragma once

#include <filesystem>
#include <vector>

#include "tuner/autotuner.hpp"

namespace q4jit {

// Sorted by K, N, group size, act-order; projections joined ("k,v"). Error naming the folder or
// tensor when the model is not a GPTQ model or a tensor is missing.
std::vector<TuneShape> model_matmul_shapes(const std::filesystem::path& dir);

}  // namespace q4jit
