// Host descriptor of the embedding family (kernel in embedding.cu): token ids to fp16 rows, with
// out-of-range ids written as zero rows and counted (never read out of bounds).
// Parameters change speed, never results (it is a copy).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_sources/family.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

struct EmbeddingShape {
  int64_t tokens = 1;  // T
  int64_t vocab = 0;   // V: rows of the table
  int64_t hidden = 0;  // C
};

struct EmbeddingConfig {
  int block_threads = 128;  // threads per block, one block per token: 64, 128, 256, 512
  int vector_width = 8;     // fp16 elements per access: 1, 2, 4, 8; hidden % width == 0
};

struct EmbeddingGeometry {
  unsigned grid_x = 1;
  unsigned block_x = 1;
};

std::vector<TuningParameter> embedding_parameters();
bool legal(const EmbeddingConfig& cfg, const DeviceInfo& device, const EmbeddingShape& shape);
std::vector<EmbeddingConfig> embedding_configs();  // default first
std::vector<EmbeddingConfig> space(const DeviceInfo& device, const EmbeddingShape& shape);
EmbeddingGeometry geometry(const EmbeddingConfig& cfg, const EmbeddingShape& shape);
std::string name_expression(const EmbeddingConfig& cfg);  // "embedding_kernel<128, 8>"
std::string to_string(const EmbeddingConfig& cfg);        // "bt128.vw8"

KernelFamily embedding_family();

}  // namespace q4jit
