// The Llama forward pass on a GPU (the Engine of model/engine.hpp): weights uploaded once
// (device_model.hpp), an fp16 KV cache of max_positions, prefill in chunks of up to
// prefill_chunk tokens, and decode steps replayed from captured graphs (one per number of
// attention splits, captured on first need; token, position and length live in device memory so
// a replay needs only a 12-byte copy). Projections run the kernels the tuning database chose
// (matmul_dispatch.hpp); logits come back as fp32. The CPU reference (model/ref/) is the
// specification it is tested against.
// Split over GPUs (--gpu-split, gpu_split.hpp), each split is a shard: its layers' weights, their
// cache and its own activations, stream, kernels per device (shared by shards on one device) and
// decode graphs (one per shard and attention plan). A forward runs the shards in order; each
// hands x and the pending residual delta to the next by a device (or peer) copy on its stream and
// an event the next stream waits on. Unsplit, there is one shard and none of that runs.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "model/engine.hpp"
#include "model/gpu/gpu_split.hpp"
#include "model/weights.hpp"
#include "tuner/matmul_choice.hpp"
#include "tuner/tune_missing.hpp"

namespace q4jit {

struct GpuEngineOptions {
  int max_positions = 0;  // <= 0: config.max_position_embeddings
  // Tokens per prefill forward at most: long enough that the dequantize + GEMM path pays for its
  // dequantization (H100, 7B: 15,769 prompt tokens/s at 2048 against 14,462 at 512).
  int prefill_chunk = 2048;
  int device = 0;  // ordinal (unsplit)
  // Layers split over GPUs, in order (parse_gpu_split); empty: everything on `device`. The plan
  // (plan_gpu_split) counts weights and the KV cache at max_positions against each split's GiB.
  std::vector<SplitRequest> split;
  bool graphs = true;  // decode through captured graphs
  // Programmatic dependent launch on sm_90+: each kernel launches while the one before it ends
  // (Backend::set_overlapped_launches); off: plain stream order.
  bool overlap_launches = true;
  // Decode steps fuse each layer's norms, SiLU and residual adds into its projections
  // (q4_matmul.hpp: Q4Fusion) where every projection's kernel at one row has the fused form:
  // six launches per layer instead of nine. Off: the separate kernels (perplexity --validate
  // and tests compare the two).
  bool fuse_decode = true;
  // Keep the fused decode step only when it measured faster than the unfused one at load (a
  // replayed step each, before the first request): which is faster depends on the tuned kernels
  // (a fused norm's gather costs more per chunk with narrow tiles). False: fused whenever legal.
  bool fuse_decode_when_faster = true;
  // Decode steps rotate the token's q and k and write the cache inside attention
  // (GpuOps::attention_decode_rope): one launch per layer instead of rope_cache + attention.
  bool fuse_decode_rope = true;
  // In a fused decode step the o projection adds its output into the residual row itself and,
  // for an act-order gate_up (as down does for the next layer's qkv), also writes that row in the
  // reader's sorted order: the fused norms then read it in order, with no gather per chunk.
  bool fuse_decode_o_residual = true;
  // Every GPTQ projection takes this path (perplexity --validate); none: the tuned choice.
  std::optional<MatmulPath> force_path;
  std::string tuning_db;  // file; empty: default_tuning_db_path()
  // automatic: the matmul problems of the model the database lacks are tuned at load (the paths
  // and configurations for every row bucket up to a prefill chunk), within tune_budget seconds;
  // off: stored winners and the defaults only.
  TuneMode tune = TuneMode::automatic;
  double tune_budget = 60;
  std::string kernel_cache;  // folder; empty: default_kernel_store_dir()
  // One line per loading step (upload, kernels); null: silent.
  std::function<void(const std::string&)> progress;
};

// Counters of what loading and running did, for --verbose and tests.
struct GpuEngineStats {
  int64_t compiles = 0;        // NVRTC compiles (0 on a warm start)
  int64_t store_hits = 0;      // kernels read from the kernel store
  int64_t graph_captures = 0;  // one per shard and attention plan
  int64_t graph_replays = 0;
  bool fused_decode = false;      // decode steps run the fused projections (fuse_decode and legal)
  bool fused_o_residual = false;  // ... with o adding into x (fuse_decode_o_residual and legal)
  // The load-time measurement behind fuse_decode_when_faster: one decode step (microseconds,
  // median of replays) fused and unfused; zeros when not measured.
  double fused_step_us = 0, unfused_step_us = 0;
  double fused_o_apart_step_us = 0;  // fused, o not (when fused_o_residual could be on)
};

// One shard of the engine: where it runs, what it holds (bytes on its device).
struct GpuShardInfo {
  int device = 0;
  std::string device_name;  // "cuda:0 (NVIDIA H100 80GB HBM3)"
  double gib = 0;           // the --gpu-split budget; 0 unsplit
  int first_layer = 0;
  int end_layer = 0;  // exclusive
  bool embedding = false, head = false;
  int64_t weight_bytes = 0;
  int64_t cache_bytes = 0;
  int64_t workspace_bytes = 0;
  // "cuda:0 (NVIDIA H100 80GB HBM3) layers 0-2 (+ embedding): weights 1.2 GiB, KV cache 0.5
  // GiB, workspace 30.0 MiB"
  std::string describe() const;
};

// Where one forward step's time goes (profile_step()). Split, the shards' times are added (each
// shard timed on its own stream; the hand-off copies are not counted).
struct StepProfile {
  double step_us = 0;  // decode: one replay of the graph; prefill: one plain forward (medians)
  // Device time between consecutive ops of the same step, captured with an event after each op
  // and replayed (medians), summed by category: "matmul" (the projections), "attention",
  // "norm" (residual add + RMSNorm), "rope" (RoPE and the cache write), "silu", "embedding",
  // "lm_head". Each includes the gap before its kernels.
  std::vector<std::pair<std::string, double>> categories_us;
  double events_total_us = 0;  // their sum (the events keep ops from overlapping: a bit more)
};

class GpuEngine : public Engine {
 public:
  // Error (one line) when there is no usable GPU, the model does not fit, or a kernel fails to
  // compile; nothing is left allocated then.
  GpuEngine(const Model& model, GpuEngineOptions options);
  ~GpuEngine() override;

  const LlamaConfig& config() const override;
  std::string device_name() const override;
  int max_positions() const override;
  int position() const override;
  void reset() override;
  std::vector<float> forward(std::span<const int32_t> tokens, bool all_logits) override;
  // Unsplit, each step's argmax is taken on the GPU and becomes the next step's input there, and
  // the host queues a step before it waits for the one before (State::decode_greedy); split, the
  // Engine default (forward and a host argmax per step).
  std::vector<int32_t> decode_greedy(int32_t token, int count,
                                     const std::function<bool(int32_t)>& on_token = {}) override;
  MemoryUse memory_use() const override;

  GpuEngineStats stats() const;
  int64_t weight_bytes() const;
  int64_t cache_bytes() const;
  int64_t workspace_bytes() const;
  // The shards in layer order (one when unsplit); the bytes above are their sums.
  std::vector<GpuShardInfo> shards() const;
  // Times a step of `rows` tokens (1: a decode step) at the current position without advancing
  // it (the cache rows it writes are overwritten by the next real step).
  StepProfile profile_step(int rows = 1, int repetitions = 50);
  // Per projection and row count, the kernel used: "layer 0 qkv M=1: gemv ... (tuned)".
  std::vector<std::string> describe_choices() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace q4jit
