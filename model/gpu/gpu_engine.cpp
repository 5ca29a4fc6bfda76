// GpuEngine: the Llama forward pass on the GPU (gpu_engine.hpp). One State holds everything the
// devices own: a DeviceRuntime per device (backend, kernels) and a Shard per split (weights,
// cache, activations, stream, graphs); members are declared so that buffers go before the
// backend that frees them. Unsplit there is one of each and the forward is exactly one stream's.
#include "model/gpu/gpu_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "cache/kernel_store.hpp"
#include "cache/tuning_db.hpp"
#include "model/gpu/device_model.hpp"
#include "model/gpu/gpu_ops.hpp"
#include "model/gpu/kernel_loader.hpp"
#include "model/gpu/matmul_dispatch.hpp"
#include "runtime/platform.hpp"
#include "tuner/attention_path_choice.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

namespace {

std::unique_ptr<Backend> open_backend() {
  Result<std::unique_ptr<Backend>> backend = open_gpu_backend();
  if (!backend) throw backend.error();
  return std::move(backend.value());
}

void select(Backend& backend, int ordinal) {
  if (backend.device_count() <= ordinal) {
    throw Error("GPU: no device " + std::to_string(ordinal) + " (" +
                std::to_string(backend.device_count()) + " found)");
  }
  backend.select_device(ordinal);
}

std::unique_ptr<Compiler> open_nvrtc() {
  Result<std::unique_ptr<Compiler>> compiler = open_compiler();
  if (!compiler) throw compiler.error();
  return std::move(compiler.value());
}

std::unique_ptr<TuningDb> open_tuning_db(const std::string& path) {
  TuningDbOptions options;
  options.path = default_tuning_db_path(path);
  return std::make_unique<TuningDb>(options);
}

// The splits: the plan of --gpu-split, or the whole model on one device.
std::vector<SplitPlan> plan_shards(const Model& model, const GpuEngineOptions& options,
                                   int max_positions, int device_count) {
  if (!options.split.empty())
    return plan_gpu_split(options.split, model_sizes(model, max_positions), device_count);
  SplitPlan whole;
  whole.device = options.device;
  whole.end_layer = model.config.num_hidden_layers;
  whole.embedding = whole.head = true;
  return {whole};
}

// "3-5" for layers [3, 6).
std::string layer_range(int first, int end) {
  return std::to_string(first) + "-" + std::to_string(end - 1);
}

}  // namespace

// One device: its backend (CUDA: its primary context) and the kernels loaded into it, shared by
// the shards on it.
struct DeviceRuntime {
  int ordinal = 0;
  std::unique_ptr<Backend> backend;  // first: destroyed last
  std::unique_ptr<MatmulChooser> chooser;
  std::unique_ptr<KernelLoader> loader;
  std::unique_ptr<GpuOps> ops;
  std::unique_ptr<MatmulDispatch> dispatch;
};

// Layers [first_layer, end_layer) on one device: weights, their KV cache, and the activations of
// a forward through them. The first shard also embeds the tokens, the last one also produces the
// logits.
struct Shard {
  DeviceRuntime* device = nullptr;
  double gib = 0;
  int first_layer = 0, end_layer = 0;
  bool embedding = false, head = false;
  Stream stream;
  Event handed_on;  // recorded after the copies to the next shard (split only)
  DeviceModel model;
  DeviceBuffer key_cache, value_cache;  // [layers][P][Hkv][D] fp16 each
  DeviceBuffer inputs;                  // int32: tokens [chunk], positions [chunk]
  DeviceBuffer step_inputs;             // int32: token, position, length of a decode step
  DeviceBuffer x, normed, scratch;      // fp16 [chunk, C]
  DeviceBuffer attention_in;            // fp16 [chunk, Nq + Nk + Nv]
  DeviceBuffer attention_out;           // fp16 [chunk, H D]
  DeviceBuffer mlp_in;                  // fp16 [chunk, 2F]
  DeviceBuffer mlp_hidden;              // fp16 [chunk, F]
  DeviceBuffer logits;                  // fp32 [chunk, V]; head only
  DeviceBuffer bad_tokens;              // int32; embedding only
  DeviceBuffer matmul_scratch;    // the projections' scratch: gathered x, a dequantized weight
  DeviceBuffer decode_workspace;  // attention_decode's counters (zero) and partials
  std::map<DecodePlan, GraphExec> decode_graphs;  // by attention plan
  HostBuffer readback;  // page-locked int32 [2]: greedy steps' tokens, alternately (decode_greedy)
  Event step_done[2];   // recorded after each readback copy into the slot of the same index

  Backend& backend() const { return *device->backend; }
  const DeviceLayer& layer(int l) const { return model.layers[size_t(l - first_layer)]; }
  int64_t workspace_bytes() const {
    return int64_t(inputs.bytes() + step_inputs.bytes() + x.bytes() + normed.bytes() +
                   scratch.bytes() + attention_in.bytes() + attention_out.bytes() + mlp_in.bytes() +
                   mlp_hidden.bytes() + logits.bytes() + matmul_scratch.bytes() +
                   decode_workspace.bytes());
  }
};

struct GpuEngine::State {
  std::unique_ptr<Compiler> compiler;
  std::unique_ptr<KernelStore> store;
  std::unique_ptr<KernelService> service;
  std::unique_ptr<TuningDb> db;
  std::vector<std::unique_ptr<DeviceRuntime>> devices;  // before the shards: destroyed after
  std::vector<std::unique_ptr<Shard>> shards;           // in layer order

  LlamaConfig config;
  GpuEngineOptions options;
  int max_positions = 0;
  int chunk = 0;
  int position = 0;
  GpuEngineStats stats;
  bool decode_warm = false;  // kernels of a decode step loaded: capture is safe
  // Set while profiling: an event is recorded after each op, labelled with its category.
  std::vector<std::pair<std::string, Event>>* marks = nullptr;

  State(const Model& model_in, GpuEngineOptions options_in);
  ~State();
  DeviceRuntime& open_device(Backend* probe, int ordinal, const Model& model_in);
  void open_shard(const SplitPlan& plan, const Model& model_in);
  void allocate_activations(Shard& s);
  // Makes the shard's device current; only needed (and only done) when shards span devices.
  void activate(const Shard& s) const {
    if (devices.size() > 1) s.backend().select_device(s.device->ordinal);
  }
  void prepare_rows(int rows);
  void prepare_fused_decode();
  void choose_fused_decode();
  double replayed_step_us(int first_position, int repetitions);
  void warm_up();
  void tune(DeviceRuntime& device, const Model& model_in);
  void run_layer(Shard& s, int l, int rows, int first_position, const DecodePlan& plan);
  void run_fused_qkv(Shard& s, int l, uint64_t out);
  void run_fused_o(Shard& s, int l);
  void run_fused_mlp(Shard& s, int l, uint64_t gate, uint64_t up);
  void enqueue_shard(Shard& s, int rows, int first_position, const DecodePlan& plan,
                     bool all_logits);
  void hand_on(Shard& from, Shard& to, int rows);
  void enter(size_t i);
  void enqueue_forward(int rows, int first_position, bool all_logits);
  void decode_step(int first_position);
  const GraphExec& decode_graph(Shard& s, const DecodePlan& plan, int first_position);
  void capture_decode_graphs();
  bool decode_captured(int first_position) const;
  std::vector<int32_t> decode_greedy(int32_t token, int count,
                                     const std::function<bool(int32_t)>& on_token);
  std::vector<float> run_chunk(std::span<const int32_t> tokens, bool all_logits);
  // A decode step reads its three inputs from step_inputs: one 12-byte copy per token.
  uint64_t tokens_address(const Shard& s, int rows) const {
    return rows == 1 ? s.step_inputs.raw() : s.inputs.raw();
  }
  uint64_t positions_address(const Shard& s, int rows) const {
    return rows == 1 ? s.step_inputs.raw() + 4 : s.inputs.raw() + 4 * uint64_t(chunk);
  }
  uint64_t length_address(const Shard& s) const { return s.step_inputs.raw() + 8; }
  void mark(Shard& s, const char* category) {
    if (marks == nullptr) return;
    marks->emplace_back(category, s.backend().create_event());
    s.backend().record(marks->back().second, s.stream);
  }
  void set_inputs(std::span<const int32_t> tokens, int rows, int first_position);
  StepProfile profile(int rows, int repetitions);
  GpuShardInfo info(const Shard& s) const;
  void progress(const std::string& line) const {
    if (options.progress) options.progress(line);
  }
};

GpuEngine::State::State(const Model& model_in, GpuEngineOptions options_in)
    : config(model_in.config), options(std::move(options_in)) {
  max_positions =
      options.max_positions > 0 ? options.max_positions : config.max_position_embeddings;
  chunk = std::clamp(options.prefill_chunk, 1, max_positions);
  std::unique_ptr<Backend> probe = open_backend();
  const std::vector<SplitPlan> plans =
      plan_shards(model_in, options, max_positions, probe->device_count());
  compiler = open_nvrtc();
  KernelStoreOptions store_options;
  store_options.dir = default_kernel_store_dir(options.kernel_cache);
  store = std::make_unique<KernelStore>(store_options);
  service = std::make_unique<KernelService>(*compiler, store.get());
  db = open_tuning_db(options.tuning_db);
  for (const SplitPlan& plan : plans) {
    const bool known = std::any_of(devices.begin(), devices.end(), [&](const auto& device) {
      return device->ordinal == plan.device;
    });
    if (!known) open_device(devices.empty() ? probe.release() : nullptr, plan.device, model_in);
  }
  for (const SplitPlan& plan : plans) open_shard(plan, model_in);
  progress("preparing kernels");
  warm_up();
  const KernelCounters counters = service->counters();
  progress("kernels: " + counters.summary());
  if (shards.size() > 1) {
    for (size_t i = 0; i < shards.size(); ++i)
      progress("split " + std::to_string(i + 1) + ": " + info(*shards[i]).describe());
  }
}

// Device memory of a device is released with its context current (CUDA frees, unloads and
// destroys in the current context).
GpuEngine::State::~State() {
  try {
    for (auto s = shards.rbegin(); s != shards.rend(); ++s) {
      activate(**s);
      s->reset();
    }
    for (auto& device : devices) {
      if (devices.size() > 1) device->backend->select_device(device->ordinal);
      device->dispatch.reset();
      device->ops.reset();
      device->loader.reset();
    }
  } catch (const Error&) {
    // A failing context switch while tearing down: the members' destructors release the rest.
  }
}

// The runtime of one device: its backend (`probe`, already open, for the first device), tuned
// kernels (--tune auto tunes what this device lacks) and dispatch.
DeviceRuntime& GpuEngine::State::open_device(Backend* probe, int ordinal, const Model& model_in) {
  auto device = std::make_unique<DeviceRuntime>();
  device->ordinal = ordinal;
  device->backend = probe != nullptr ? std::unique_ptr<Backend>(probe) : open_backend();
  select(*device->backend, ordinal);
  const DeviceInfo& info = device->backend->current_device();
  if (options.tune == TuneMode::automatic && model_in.quantization.quantized)
    tune(*device, model_in);
  device->chooser =
      std::make_unique<MatmulChooser>(db.get(), device_fingerprint(info, *compiler), info);
  device->loader = std::make_unique<KernelLoader>(*device->backend, *service);
  device->ops = std::make_unique<GpuOps>(*device->loader);
  device->dispatch =
      std::make_unique<MatmulDispatch>(*device->loader, *device->chooser, options.force_path);
  device->ops->set_decode_limits(config.num_attention_heads, config.num_key_value_heads,
                                 config.head_dim, max_positions);
  // The tuned attention paths (prefill per row bucket, decode split per length); none stored:
  // GpuOps' built-in rules.
  device->ops->set_attention_choice(load_attention_choice(
      db.get(), device_fingerprint(info, *compiler), info,
      {config.num_attention_heads, config.num_key_value_heads, config.head_dim, max_positions}));
  devices.push_back(std::move(device));
  return *devices.back();
}

void GpuEngine::State::open_shard(const SplitPlan& plan, const Model& model_in) {
  auto shard = std::make_unique<Shard>();
  Shard& s = *shard;
  for (auto& device : devices)
    if (device->ordinal == plan.device) s.device = device.get();
  s.gib = plan.gib;
  s.first_layer = plan.first_layer;
  s.end_layer = plan.end_layer;
  s.embedding = plan.embedding;
  s.head = plan.head;
  shards.push_back(std::move(shard));
  if (devices.size() > 1) s.backend().select_device(s.device->ordinal);
  Backend& backend = s.backend();
  const DeviceInfo& device = backend.current_device();
  s.stream = backend.create_stream();
  if (options.overlap_launches && backend.set_overlapped_launches(s.stream, true) &&
      shards.size() == 1)
    progress("kernels launch overlapped (programmatic dependent launch)");
  if (!plan.head) s.handed_on = backend.create_event();

  const bool whole = plan.embedding && plan.head;
  progress("uploading " +
           (whole ? "" : "layers " + layer_range(plan.first_layer, plan.end_layer) + " ") +
           "weights to " + device.name);
  const MatmulChooser& chooser = *s.device->chooser;
  const auto fuse = [&](const MatmulShapeKey& fused, std::span<const MatmulShapeKey> parts) {
    return chooser.fuse(fused, parts);
  };
  ModelPart part{plan.first_layer, plan.end_layer, plan.embedding, plan.head};
  s.model = upload_model(
      backend, model_in,
      [&](int done, int count) {
        if (done == count || done % 8 == 0)
          progress("uploaded layer " + std::to_string(done) + "/" + std::to_string(count));
      },
      fuse, part);
  allocate_activations(s);
}

void GpuEngine::State::allocate_activations(Shard& s) {
  Backend& backend = s.backend();
  const size_t C = config.hidden_size, F = config.intermediate_size;
  const size_t HD = size_t(config.num_attention_heads) * config.head_dim;
  const size_t KVD = size_t(config.num_key_value_heads) * config.head_dim;
  const size_t rows = size_t(chunk);
  const size_t cache = size_t(s.end_layer - s.first_layer) * max_positions * KVD * 2;
  s.key_cache = backend.allocate(std::max<size_t>(cache, 16));
  s.value_cache = backend.allocate(std::max<size_t>(cache, 16));
  s.inputs = backend.allocate(4 * 2 * rows);
  s.step_inputs = backend.allocate(16);
  s.x = backend.allocate(rows * C * 2);
  s.normed = backend.allocate(rows * C * 2);
  s.scratch = backend.allocate(rows * C * 2);
  s.attention_in = backend.allocate(rows * (HD + 2 * KVD) * 2);
  s.attention_out = backend.allocate(rows * HD * 2);
  s.mlp_in = backend.allocate(rows * 2 * F * 2);
  s.mlp_hidden = backend.allocate(rows * F * 2);
  if (s.head) s.logits = backend.allocate(rows * size_t(config.vocab_size) * 4);
  if (s.embedding) {
    s.bad_tokens = backend.allocate(16);
    backend.memset(s.bad_tokens.raw(), 0, 16, {});
  }
  const GpuOps& ops = *s.device->ops;
  s.decode_workspace =
      backend.allocate(size_t(std::max<int64_t>(ops.decode_workspace_bytes(), 16)));
  backend.memset(s.decode_workspace.raw(), 0, s.decode_workspace.bytes(), {});
}

// Chooses and loads the projections' kernels at `rows` rows and grows each shard's scratch to
// what its layers need (dropping its captured graphs, which hold the old address).
void GpuEngine::State::prepare_rows(int rows) {
  for (auto& shard : shards) {
    Shard& s = *shard;
    activate(s);
    MatmulDispatch& dispatch = *s.device->dispatch;
    int64_t needed = 16;
    for (const DeviceLayer& layer : s.model.layers) {
      for (const DeviceLinear& linear : layer.attention_in)
        needed = std::max(needed, dispatch.prepare(linear, rows));
      for (const DeviceLinear& linear : layer.mlp_in)
        needed = std::max(needed, dispatch.prepare(linear, rows));
      needed = std::max(needed, dispatch.prepare(layer.o, rows));
      needed = std::max(needed, dispatch.prepare(layer.down, rows));
    }
    if (s.matmul_scratch && int64_t(s.matmul_scratch.bytes()) >= needed) continue;
    Backend& backend = s.backend();
    backend.synchronize(s.stream);
    s.decode_graphs.clear();
    s.matmul_scratch = backend.allocate(size_t(needed));
    backend.memset(s.matmul_scratch.raw(), 0, size_t(needed), {});
    backend.synchronize({});
  }
}

namespace {

// The fused decode projections of one layer: q, k, v with the input norm; gate and up with the
// post-attention norm (of x plus o's pending delta); down with SiLU in and both residual adds
// out (model/gpu/matmul_dispatch.hpp).
constexpr Q4Fusion kNormInput{Q4FusedInput::norm, false};
constexpr Q4Fusion kSiluResidual{Q4FusedInput::silu, true};
constexpr Q4Fusion kDirectResidual{Q4FusedInput::direct, true};

// Whether a layer's projections all have their fused forms at one row: q, k, v one projection,
// gate and up one, each with a fusable (stream-K or tile) configuration at one row
// (MatmulChooser::fused_gemv), and down reading its input in order.
bool layer_fusable(MatmulDispatch& dispatch, const DeviceLayer& layer) {
  if (layer.attention_in.size() != 1 || layer.mlp_in.size() != 1) return false;
  if (layer.down.shape.act_order && !layer.down_input_sorted) return false;
  return dispatch.fusable(layer.attention_in[0]) && dispatch.fusable(layer.mlp_in[0]) &&
         dispatch.fusable(layer.down);
}

}  // namespace

// Decides whether decode steps run fused (all layers of all shards, or none: the fused layer
// leaves no pending delta, which the unfused one expects) and loads the fused kernels.
void GpuEngine::State::prepare_fused_decode() {
  bool fusable = options.fuse_decode;
  for (auto& shard : shards) {
    activate(*shard);
    for (const DeviceLayer& layer : shard->model.layers)
      fusable = fusable && layer_fusable(*shard->device->dispatch, layer);
  }
  stats.fused_decode = fusable;
  if (!fusable) return;
  bool o_residual = options.fuse_decode_o_residual;
  for (auto& shard : shards) {
    activate(*shard);
    for (const DeviceLayer& layer : shard->model.layers)
      o_residual = o_residual && shard->device->dispatch->fusable(layer.o);
  }
  stats.fused_o_residual = o_residual;
  for (auto& shard : shards) {
    activate(*shard);
    MatmulDispatch& dispatch = *shard->device->dispatch;
    for (const DeviceLayer& layer : shard->model.layers) {
      dispatch.prepare_fused(layer.attention_in[0], kNormInput);
      if (o_residual) dispatch.prepare_fused(layer.o, kDirectResidual);
      dispatch.prepare_fused(layer.mlp_in[0], kNormInput);
      dispatch.prepare_fused(layer.down, kSiluResidual);
    }
  }
  progress(std::string("decode: the projections have fused forms (norms, SiLU and residual adds "
                       "in them") +
           (o_residual ? "; o adds into the residual" : "") + ")");
}

// --tune auto: tunes what the database lacks for this model on this device (nothing, and at
// once, when all of it is stored), so that the chooser finds winners for every shape and row
// bucket the engine runs.
void GpuEngine::State::tune(DeviceRuntime& device, const Model& model_in) {
  TuneOptions tune_options;
  tune_options.budget_seconds = options.tune_budget;
  tune_options.m_buckets = engine_m_buckets(chunk);
  if (options.progress) {
    tune_options.progress = [this](const std::string& line) { progress("tune: " + line); };
  }
  const TuneMissingResult result =
      tune_missing(*device.backend, *service, *db, model_in.dir, tune_options, max_positions);
  if (result.counters.tuned > 0) {
    progress("tuned " + std::to_string(result.counters.tuned) + " problems in " +
             std::to_string(int(result.counters.seconds)) + " s");
  }
  if (result.counters.attention > 0)
    progress("decided " + std::to_string(result.counters.attention) + " attention kernels");
}

// Median microseconds of `run` over `repetitions`, between events on the stream.
template <typename Run>
double median_us(Backend& backend, const Stream& stream, int repetitions, Run run) {
  std::vector<double> times;
  const Event start = backend.create_event(), end = backend.create_event();
  for (int i = 0; i < repetitions; ++i) {
    backend.record(start, stream);
    run();
    backend.record(end, stream);
    times.push_back(1000.0 * backend.elapsed_ms(start, end));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Loads every kernel a request can need now, not in the middle of the first one: the projections
// at each M bucket up to a chunk, then one chunk-sized prefill (all logits) and one decode step
// for the ops. The cache is emptied afterwards.
void GpuEngine::State::warm_up() {
  for (int rows = 1; rows < chunk; rows *= 2) prepare_rows(rows);
  prepare_rows(chunk);
  prepare_fused_decode();
  const int rows = std::min(chunk, max_positions - 1);
  if (rows >= 2) run_chunk(std::vector<int32_t>(size_t(rows), 0), true);
  const int32_t token = 0;
  run_chunk(std::span<const int32_t>(&token, 1), false);
  position = 0;
  if (shards.size() == 1) decode_greedy(token, 1, {});  // loads greedy_token
  choose_fused_decode();
  capture_decode_graphs();
  position = 0;
}

// A decode step at first_position run plainly (loading its kernels), captured and replayed:
// the median of `repetitions` replays, in microseconds, summed over the shards.
double GpuEngine::State::replayed_step_us(int first_position, int repetitions) {
  const int32_t token = 0;
  set_inputs(std::span<const int32_t>(&token, 1), 1, first_position);
  decode_step(first_position);
  decode_step(first_position);
  double us = 0;
  for (auto& shard : shards) {
    Shard& s = *shard;
    activate(s);
    const auto graph = s.decode_graphs.find(s.device->ops->decode_plan(first_position + 1));
    us += median_us(s.backend(), s.stream, repetitions,
                    [&] { s.backend().launch_graph(graph->second, s.stream); });
  }
  return us;
}

// fuse_decode_when_faster: times a decode step fused and unfused (graphs of both, at a short
// context) and keeps the faster; the graphs of the other are dropped.
void GpuEngine::State::choose_fused_decode() {
  if (!stats.fused_decode || !options.fuse_decode_when_faster || !options.graphs) return;
  const int at = std::min(128, max_positions - 1);
  // One replayed step with the given form; the graphs go, captured with that form.
  const auto time_step = [&](bool fused, bool o_residual) {
    stats.fused_decode = fused;
    stats.fused_o_residual = o_residual;
    const double us = replayed_step_us(at, 20);
    for (auto& shard : shards) {
      activate(*shard);
      shard->backend().synchronize(shard->stream);
      shard->decode_graphs.clear();
    }
    return us;
  };
  const bool o_residual = stats.fused_o_residual;
  stats.fused_step_us = time_step(true, o_residual);
  // o as its own tuned kernel may beat its fused form by more than the residual add saves.
  stats.fused_o_apart_step_us = o_residual ? time_step(true, false) : 0;
  stats.unfused_step_us = time_step(false, false);
  const bool o_apart_faster = o_residual && stats.fused_o_apart_step_us < stats.fused_step_us;
  const double fused_us = o_apart_faster ? stats.fused_o_apart_step_us : stats.fused_step_us;
  stats.fused_decode = fused_us < stats.unfused_step_us;
  stats.fused_o_residual = stats.fused_decode && o_residual && !o_apart_faster;
  char line[200];
  std::snprintf(line, sizeof line,
                "decode: a fused step %.0f us (o apart %.0f us), unfused %.0f us: %s",
                stats.fused_step_us, stats.fused_o_apart_step_us, stats.unfused_step_us,
                !stats.fused_decode      ? "unfused"
                : stats.fused_o_residual ? "fused, o into the residual"
                                         : "fused, o apart");
  progress(line);
}

namespace {

// The order a projection group wants its input in: the weights' sorted row order when it is one
// act-order matmul (its producer then writes x already gathered), else 0 (original order; an
// unfused act-order group gathers per projection in MatmulDispatch).
uint64_t input_order(const std::vector<DeviceLinear>& consumers) {
  const DeviceLinear& first = consumers.front();
  return consumers.size() == 1 && first.quantized && first.shape.act_order ? first.x_map.raw() : 0;
}

}  // namespace

// Layer l (of the model) on its shard. The residual add of the layer's last projection (down,
// into `scratch`) is left to the next add_rms_norm: the next layer's input norm (on this shard or,
// after the hand-on, the next), or the final norm. A fused decode step (prepare_fused_decode)
// runs no norm or SiLU kernel: q, k, v and gate, up normalize their input themselves, and down
// adds its own output (and o's, unless o added it itself) into x, so x is whole after every layer.
void GpuEngine::State::run_layer(Shard& s, int l, int rows, int first_position,
                                 const DecodePlan& plan) {
  const DeviceLayer& layer = s.layer(l);
  GpuOps& ops = *s.device->ops;
  MatmulDispatch& dispatch = *s.device->dispatch;
  const StreamView stream = s.stream;
  const int C = config.hidden_size, F = config.intermediate_size;
  const int H = config.num_attention_heads, Hkv = config.num_key_value_heads;
  const int D = config.head_dim;
  const float eps = config.rms_norm_eps;
  const uint64_t ws = s.matmul_scratch.raw();
  const bool fused = rows == 1 && stats.fused_decode;
  const uint64_t qkv_order = input_order(layer.attention_in);
  if (!fused) {
    ops.add_rms_norm(s.normed.raw(), s.x.raw(), l == 0 ? 0 : s.scratch.raw(),
                     layer.input_norm.raw(), qkv_order, rows, C, eps, stream);
    mark(s, "norm");
  }

  // q, k, v: one fused output [rows, Nq+Nk+Nv], or three packed regions.
  uint64_t parts[3];
  int strides[3];
  const bool fused_qkv = layer.attention_in.size() == 1;
  uint64_t region = s.attention_in.raw();
  const int widths[3] = {H * D, Hkv * D, Hkv * D};
  for (int i = 0; i < 3; ++i) {
    parts[i] =
        fused_qkv ? s.attention_in.raw() + 2 * uint64_t(i ? H * D + (i - 1) * Hkv * D : 0) : region;
    strides[i] = fused_qkv ? (H + 2 * Hkv) * D : widths[i];
    region += 2 * uint64_t(rows) * widths[i];
  }
  if (fused) {
    run_fused_qkv(s, l, parts[0]);
  } else {
    for (size_t i = 0; i < layer.attention_in.size(); ++i) {
      dispatch.run(layer.attention_in[i], rows, s.normed.raw(), parts[i], ws, stream,
                   qkv_order != 0);
    }
  }
  mark(s, "matmul");

  const int64_t layer_offset = kv_cache_layer_offset(l - s.first_layer, max_positions, Hkv, D) * 2;
  const uint64_t keys = s.key_cache.raw() + layer_offset;
  const uint64_t values = s.value_cache.raw() + layer_offset;
  const float theta = config.rope_theta;
  const float rope_scale =
      config.rope_scaling.kind == RopeScaling::Kind::linear ? config.rope_scaling.factor : 1.0f;
  const bool rope_in_attention = rows == 1 && options.fuse_decode_rope;
  if (!rope_in_attention) {
    ops.rope_cache({rows, H, Hkv, D, strides[0], strides[1], strides[2], max_positions}, parts[0],
                   parts[1], parts[2], keys, values, positions_address(s, rows), theta, rope_scale,
                   stream);
    mark(s, "rope");
  }
  const float scale = 1.0f / std::sqrt(float(D));
  // Decode attention writes its output in the o projection's sorted order (no gather launch).
  const bool o_sorted = rows == 1 && layer.o.quantized && layer.o.shape.act_order;
  const uint64_t o_order = o_sorted ? layer.o.sorted_of.raw() : 0;
  if (rope_in_attention) {
    const AttentionDecodeRope rope{parts[1],      parts[2], positions_address(s, rows),
                                   max_positions, theta,    rope_scale};
    ops.attention_decode_rope(s.attention_out.raw(), parts[0], keys, values,
                              s.decode_workspace.raw(), length_address(s), plan, scale, o_order,
                              rope, stream);
  } else if (rows == 1) {
    ops.attention_decode(s.attention_out.raw(), parts[0], keys, values, s.decode_workspace.raw(),
                         length_address(s), plan, scale, o_order, stream);
  } else {
    ops.attention_prefill({rows, first_position, H, Hkv, D, strides[0], H * D},
                          s.attention_out.raw(), parts[0], keys, values, scale, stream);
  }
  mark(s, "attention");
  if (fused) {
    run_fused_o(s, l);
  } else {
    dispatch.run(layer.o, rows, s.attention_out.raw(), s.scratch.raw(), ws, stream, o_sorted);
  }
  mark(s, "matmul");

  const bool fused_mlp = layer.mlp_in.size() == 1;
  const uint64_t gate = s.mlp_in.raw();
  const uint64_t up = s.mlp_in.raw() + 2 * uint64_t(fused_mlp ? F : int64_t(rows) * F);
  const int stride = fused_mlp ? 2 * F : F;
  if (fused) {
    run_fused_mlp(s, l, gate, up);
    return;
  }
  const uint64_t mlp_order = input_order(layer.mlp_in);
  ops.add_rms_norm(s.normed.raw(), s.x.raw(), s.scratch.raw(), layer.post_norm.raw(), mlp_order,
                   rows, C, eps, stream);
  mark(s, "norm");
  dispatch.run(layer.mlp_in[0], rows, s.normed.raw(), gate, ws, stream, mlp_order != 0);
  if (!fused_mlp)
    dispatch.run(layer.mlp_in[1], rows, s.normed.raw(), up, ws, stream, mlp_order != 0);
  mark(s, "matmul");
  ops.silu_mul(s.mlp_hidden.raw(), gate, up, rows, F, stride, stream);
  mark(s, "silu");
  dispatch.run(layer.down, rows, s.mlp_hidden.raw(), s.scratch.raw(), ws, stream,
               layer.down_input_sorted);
  mark(s, "matmul");
}

// The projections of a fused decode step (prepare_fused_decode). Where the residual row goes
// besides x: down writes it again into `normed` in the next layer's qkv order when that layer is
// on this shard and act-order, and with fused_o_residual, o into `scratch` in gate_up's sorted
// row order when gate_up is act-order; the fused norm then reads that copy in order (with the
// norm weight sorted alike) instead of gathering x through x_map chunk by chunk. Neither buffer
// holds anything else in a decode step. Without fused_o_residual, o leaves its output in
// scratch as the pending delta that gate_up's norm and down's residual add take.
void GpuEngine::State::run_fused_qkv(Shard& s, int l, uint64_t out) {
  const DeviceLayer& layer = s.layer(l);
  // The previous layer's down wrote the sorted copy (run_fused_mlp) when both are here.
  const bool sorted = layer.input_norm_sorted && l > s.first_layer;
  Q4FusionOperands norm;
  norm.norm_weight = sorted ? layer.input_norm_sorted.raw() : layer.input_norm.raw();
  norm.eps = config.rms_norm_eps;
  s.device->dispatch->run_fused(layer.attention_in[0], kNormInput,
                                sorted ? s.normed.raw() : s.x.raw(), out, norm, s.stream, sorted);
}

void GpuEngine::State::run_fused_o(Shard& s, int l) {
  const DeviceLayer& layer = s.layer(l);
  MatmulDispatch& dispatch = *s.device->dispatch;
  // Decode attention wrote its output in o's sorted order (run_layer).
  if (!stats.fused_o_residual) {
    dispatch.run(layer.o, 1, s.attention_out.raw(), s.scratch.raw(), s.matmul_scratch.raw(),
                 s.stream, layer.o.quantized && layer.o.shape.act_order);
    return;
  }
  Q4FusionOperands residual;
  residual.residual = s.x.raw();
  if (layer.post_norm_sorted) {
    residual.sorted_copy = s.scratch.raw();
    residual.sorted_position = layer.mlp_in[0].sorted_of.raw();
  }
  dispatch.run_fused(layer.o, kDirectResidual, s.attention_out.raw(), 0, residual, s.stream);
}

void GpuEngine::State::run_fused_mlp(Shard& s, int l, uint64_t gate, uint64_t up) {
  const DeviceLayer& layer = s.layer(l);
  MatmulDispatch& dispatch = *s.device->dispatch;
  const bool o_added = stats.fused_o_residual;
  const bool sorted = o_added && layer.post_norm_sorted;
  Q4FusionOperands norm;
  norm.norm_weight = sorted ? layer.post_norm_sorted.raw() : layer.post_norm.raw();
  norm.input_delta = o_added ? 0 : s.scratch.raw();
  norm.eps = config.rms_norm_eps;
  dispatch.run_fused(layer.mlp_in[0], kNormInput, sorted ? s.scratch.raw() : s.x.raw(), gate, norm,
                     s.stream, sorted);
  mark(s, "matmul");
  Q4FusionOperands silu;
  silu.up = up;
  silu.residual = s.x.raw();
  silu.residual_delta = o_added ? 0 : s.scratch.raw();
  if (l + 1 < s.end_layer && s.layer(l + 1).input_norm_sorted) {
    silu.sorted_copy = s.normed.raw();
    silu.sorted_position = s.layer(l + 1).attention_in[0].sorted_of.raw();
  }
  dispatch.run_fused(layer.down, kSiluResidual, gate, 0, silu, s.stream);
  mark(s, "matmul");
}

// One shard's part of a forward over `rows` tokens already in its `inputs` (and, after the first
// shard, x and the pending delta handed on in x and scratch): the embedding on the first shard,
// its layers, and on the last shard the final norm and fp32 logits of the last row (or of every
// row) in `logits`. Enqueued only: a graph capture records it.
void GpuEngine::State::enqueue_shard(Shard& s, int rows, int first_position, const DecodePlan& plan,
                                     bool all_logits) {
  const int C = config.hidden_size, V = config.vocab_size;
  GpuOps& ops = *s.device->ops;
  mark(s, "start");
  if (s.embedding) {
    ops.embedding(s.x.raw(), s.model.embed.raw(), tokens_address(s, rows), rows, V, C,
                  s.bad_tokens.raw(), s.stream);
    mark(s, "embedding");
  }
  for (int l = s.first_layer; l < s.end_layer; ++l) run_layer(s, l, rows, first_position, plan);
  if (!s.head) return;
  // The last layer's residual add, on the rows whose logits are wanted only.
  const int logit_rows = all_logits ? rows : 1;
  const uint64_t first_row = 2 * uint64_t(all_logits ? 0 : rows - 1) * C;
  // A fused decode step leaves x whole (run_layer); otherwise down's delta is still pending.
  const bool pending = config.num_hidden_layers > 0 && !(rows == 1 && stats.fused_decode);
  const uint64_t last_delta = pending ? s.scratch.raw() + first_row : 0;
  ops.add_rms_norm(s.normed.raw(), s.x.raw() + first_row, last_delta, s.model.final_norm.raw(), 0,
                   logit_rows, C, config.rms_norm_eps, s.stream);
  mark(s, "norm");
  ops.lm_head(s.logits.raw(), s.normed.raw(), s.model.lm_head_weight(), logit_rows, C, V, s.stream);
  mark(s, "lm_head");
}

// The hidden state after `from`'s layers (x and the delta its last down projection left in
// scratch, rows of each) copied into `to`'s, on `from`'s stream, then an event `to` waits on.
void GpuEngine::State::hand_on(Shard& from, Shard& to, int rows) {
  const size_t bytes = 2 * size_t(rows) * config.hidden_size;
  Backend& backend = from.backend();
  if (from.device == to.device) {
    backend.copy_on_device(to.x.raw(), from.x.raw(), bytes, from.stream);
    backend.copy_on_device(to.scratch.raw(), from.scratch.raw(), bytes, from.stream);
  } else {
    const int source = from.device->ordinal, target = to.device->ordinal;
    backend.copy_peer(to.x.raw(), target, from.x.raw(), source, bytes, from.stream);
    backend.copy_peer(to.scratch.raw(), target, from.scratch.raw(), source, bytes, from.stream);
  }
  backend.record(from.handed_on, from.stream);
}

// Makes shard i's device current and its stream wait for the previous shard's hand-on.
void GpuEngine::State::enter(size_t i) {
  Shard& s = *shards[i];
  activate(s);
  if (i > 0) s.backend().wait(shards[i - 1]->handed_on, s.stream);
}

// A prefill forward over `rows` tokens, shard by shard.
void GpuEngine::State::enqueue_forward(int rows, int first_position, bool all_logits) {
  for (size_t i = 0; i < shards.size(); ++i) {
    enter(i);
    enqueue_shard(*shards[i], rows, first_position, DecodePlan{}, all_logits);
    if (i + 1 < shards.size()) hand_on(*shards[i], *shards[i + 1], rows);
  }
}

// One token, each shard replaying its graph for the attention plan of this length (captured on
// first need; the first step after loading runs plainly and loads every kernel).
void GpuEngine::State::decode_step(int first_position) {
  const bool replay = options.graphs && decode_warm;
  for (size_t i = 0; i < shards.size(); ++i) {
    enter(i);
    Shard& s = *shards[i];
    const DecodePlan plan = s.device->ops->decode_plan(first_position + 1);
    if (!replay) {
      enqueue_shard(s, 1, first_position, plan, false);
    } else {
      s.backend().launch_graph(decode_graph(s, plan, first_position), s.stream);
    }
    if (i + 1 < shards.size()) hand_on(s, *shards[i + 1], 1);
  }
  if (replay) ++stats.graph_replays;
  decode_warm = true;
}

// The shard's decode step with this attention plan as a graph, captured on first need. The step's
// token, position and length live in device memory, so one graph serves every position of its
// plan; first_position only has to be one of them.
const GraphExec& GpuEngine::State::decode_graph(Shard& s, const DecodePlan& plan,
                                                int first_position) {
  auto found = s.decode_graphs.find(plan);
  if (found == s.decode_graphs.end()) {
    s.backend().begin_capture(s.stream);
    enqueue_shard(s, 1, first_position, plan, false);
    found = s.decode_graphs.emplace(plan, s.backend().end_capture(s.stream)).first;
    ++stats.graph_captures;
  }
  return found->second;
}

// Captures every attention plan's decode graph up to max_positions at load. Captured on first
// need instead, a request pays a capture and instantiation (milliseconds, with the stream drained
// first) each time its length crosses into a new plan: on the H100 with a 7B model, 3 of them in
// 128 tokens after a 4-token prompt cost about 3% of the generation time.
void GpuEngine::State::capture_decode_graphs() {
  if (!options.graphs || !decode_warm) return;
  const auto start = std::chrono::steady_clock::now();
  const int64_t before = stats.graph_captures;
  for (auto& shard : shards) {
    Shard& s = *shard;
    activate(s);
    s.backend().synchronize(s.stream);
    DecodePlan last{-1, -1};
    for (int length = 1; length <= max_positions; ++length) {
      const DecodePlan plan = s.device->ops->decode_plan(length);
      if (plan != last && plan.split > 0) decode_graph(s, plan, length - 1);
      last = plan;
    }
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  char line[120];
  std::snprintf(line, sizeof line,
                "decode: %lld graphs captured (every attention plan up to %d positions) in %.0f ms",
                static_cast<long long>(stats.graph_captures - before), max_positions, ms);
  progress(line);
}

// Whether the step at first_position replays a graph already captured (or runs plainly): a capture
// wants nothing in flight on the stream.
bool GpuEngine::State::decode_captured(int first_position) const {
  if (!options.graphs || !decode_warm) return true;
  const Shard& s = *shards.front();
  return s.decode_graphs.count(s.device->ops->decode_plan(first_position + 1)) > 0;
}

// Greedy decoding with the host out of the loop (unsplit): each step's greedy_token launch writes
// the next step's token, position and length where the step reads them, and the host queues step
// i + 1 before it waits for step i's token (copied back into page-locked memory, so the copy
// returns at once), so the GPU never idles on a copy, an argmax or a launch. A stop leaves one
// step queued past it: it runs and writes a cache row past position, which the next step
// overwrites.
std::vector<int32_t> GpuEngine::State::decode_greedy(int32_t token, int count,
                                                     const std::function<bool(int32_t)>& on_token) {
  Shard& s = *shards.front();
  Backend& backend = s.backend();
  if (!s.readback) {
    s.readback = backend.allocate_host(2 * sizeof(int32_t));
    for (Event& event : s.step_done) event = backend.create_event();
  }
  auto* slots = reinterpret_cast<int32_t*>(s.readback.raw());
  const int start = position;
  set_inputs(std::span<const int32_t>(&token, 1), 1, start);
  const auto enqueue = [&](int step) {
    if (!decode_captured(start + step)) backend.synchronize(s.stream);
    decode_step(start + step);
    s.device->ops->greedy_token(s.step_inputs.raw(), s.logits.raw(), config.vocab_size, s.stream);
    backend.copy_to_host(slots + step % 2, s.step_inputs.raw(), sizeof(int32_t), s.stream);
    backend.record(s.step_done[step % 2], s.stream);
  };
  std::vector<int32_t> chosen;
  if (count > 0) enqueue(0);
  for (int step = 0; step < count; ++step) {
    if (step + 1 < count) enqueue(step + 1);
    backend.synchronize_event(s.step_done[step % 2]);
    chosen.push_back(slots[step % 2]);
    if (on_token && !on_token(chosen.back())) break;
  }
  backend.synchronize(s.stream);
  position = start + int(chosen.size());
  return chosen;
}

// Tokens (zeros past tokens.size()) and positions first_position.. into every shard's inputs, or
// a decode step's token, position and length (positions attended) into step_inputs.
void GpuEngine::State::set_inputs(std::span<const int32_t> tokens, int rows, int first_position) {
  std::vector<int32_t> host;
  if (rows == 1) {
    host = {tokens.empty() ? 0 : tokens[0], first_position, first_position + 1};
  } else {
    host.assign(2 * size_t(chunk), 0);
    std::copy(tokens.begin(), tokens.end(), host.begin());
    for (int t = 0; t < rows; ++t) host[chunk + t] = first_position + t;
  }
  for (auto& shard : shards) {
    activate(*shard);
    const uint64_t target = rows == 1 ? shard->step_inputs.raw() : shard->inputs.raw();
    shard->backend().copy_to_device(target, host.data(), host.size() * 4, shard->stream);
  }
}

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

StepProfile GpuEngine::State::profile(int rows, int repetitions) {
  StepProfile profile;
  const bool replayed = rows == 1 && options.graphs;
  if (replayed) {
    profile.step_us = replayed_step_us(position, repetitions);
  } else {
    set_inputs({}, rows, position);
    if (rows == 1) decode_step(position);  // loads every kernel
    if (rows > 1) prepare_rows(rows);
  }
  std::map<std::string, double> categories;
  for (auto& shard : shards) {
    Shard& s = *shard;
    activate(s);
    Backend& backend = s.backend();
    const DecodePlan plan = rows == 1 ? s.device->ops->decode_plan(position + 1) : DecodePlan{};
    if (!replayed) {
      profile.step_us += median_us(backend, s.stream, std::max(1, repetitions / 10),
                                   [&] { enqueue_shard(s, rows, position, plan, false); });
    }
    // The same step captured with an event record node after each op, replayed: every interval
    // is measured on the device (no host launch in it); a record between two kernels keeps the
    // second from overlapping the first, so the intervals add up to a little more than step_us.
    std::vector<std::pair<std::string, Event>> events;
    marks = &events;
    backend.begin_capture(s.stream);
    enqueue_shard(s, rows, position, plan, false);
    const GraphExec marked = backend.end_capture(s.stream);
    marks = nullptr;
    std::map<std::string, std::vector<double>> samples;  // category -> per-replay sums
    const int replays = rows == 1 ? 7 : 3;
    for (int replay = 0; replay <= replays; ++replay) {
      backend.launch_graph(marked, s.stream);
      backend.synchronize(s.stream);
      if (replay == 0) continue;  // warm-up
      std::map<std::string, double> sums;
      for (size_t i = 1; i < events.size(); ++i)
        sums[events[i].first] +=
            1000.0 * backend.elapsed_ms(events[i - 1].second, events[i].second);
      for (const auto& [category, us] : sums) samples[category].push_back(us);
    }
    for (auto& [category, values] : samples) categories[category] += median(values);
  }
  for (const auto& [category, us] : categories) {
    profile.categories_us.emplace_back(category, us);
    profile.events_total_us += us;
  }
  return profile;
}

std::vector<float> GpuEngine::State::run_chunk(std::span<const int32_t> tokens, bool all_logits) {
  const int rows = int(tokens.size());
  set_inputs(tokens, rows, position);
  if (rows == 1) {
    decode_step(position);
  } else {
    prepare_rows(rows);
    enqueue_forward(rows, position, all_logits);
  }
  Shard& last = *shards.back();
  activate(last);
  const size_t count = size_t(all_logits ? rows : 1) * config.vocab_size;
  std::vector<float> out(count);
  last.backend().copy_to_host(out.data(), last.logits.raw(), count * 4, last.stream);
  last.backend().synchronize(last.stream);
  position += rows;
  return out;
}

GpuShardInfo GpuEngine::State::info(const Shard& s) const {
  GpuShardInfo info;
  info.device = s.device->ordinal;
  info.device_name =
      "cuda:" + std::to_string(s.device->ordinal) + " (" + s.backend().current_device().name + ")";
  info.gib = s.gib;
  info.first_layer = s.first_layer;
  info.end_layer = s.end_layer;
  info.embedding = s.embedding;
  info.head = s.head;
  info.weight_bytes = s.model.bytes;
  info.cache_bytes = int64_t(s.key_cache.bytes() + s.value_cache.bytes());
  info.workspace_bytes = s.workspace_bytes();
  return info;
}

GpuEngine::GpuEngine(const Model& model, GpuEngineOptions options)
    : state_(std::make_unique<State>(model, std::move(options))) {}

GpuEngine::~GpuEngine() = default;

const LlamaConfig& GpuEngine::config() const {
  return state_->config;
}

// Unsplit: "cuda:0 (NVIDIA H100 80GB HBM3)"; split: each shard's device and layers joined by " + ".
std::string GpuEngine::device_name() const {
  const State& s = *state_;
  if (s.shards.size() == 1) return s.info(*s.shards.front()).device_name;
  std::string name;
  for (const auto& shard : s.shards) {
    const GpuShardInfo info = s.info(*shard);
    name += (name.empty() ? "" : " + ") + info.device_name + " layers " +
            layer_range(info.first_layer, info.end_layer);
  }
  return name;
}

int GpuEngine::max_positions() const {
  return state_->max_positions;
}

int GpuEngine::position() const {
  return state_->position;
}

void GpuEngine::reset() {
  state_->position = 0;
}

std::vector<float> GpuEngine::forward(std::span<const int32_t> tokens, bool all_logits) {
  State& s = *state_;
  Q4JIT_CHECK(!tokens.empty(), "forward: no tokens given");
  const int64_t end = int64_t(s.position) + int64_t(tokens.size());
  Q4JIT_CHECK(end <= s.max_positions, "forward: positions " + std::to_string(s.position) + ".." +
                                          std::to_string(end - 1) + " exceed max_positions " +
                                          std::to_string(s.max_positions));
  for (size_t t = 0; t < tokens.size(); ++t) {
    Q4JIT_CHECK(tokens[t] >= 0 && tokens[t] < s.config.vocab_size,
                "forward: token " + std::to_string(tokens[t]) + " at index " + std::to_string(t) +
                    " is outside the vocabulary [0, " + std::to_string(s.config.vocab_size) + ")");
  }
  std::vector<float> logits;
  for (size_t start = 0; start < tokens.size(); start += size_t(s.chunk)) {
    const size_t rows = std::min(tokens.size() - start, size_t(s.chunk));
    const bool last = start + rows == tokens.size();
    if (!all_logits && !last) {
      s.run_chunk(tokens.subspan(start, rows), false);
      continue;
    }
    std::vector<float> part = s.run_chunk(tokens.subspan(start, rows), all_logits);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  return logits;
}

std::vector<int32_t> GpuEngine::decode_greedy(int32_t token, int count,
                                              const std::function<bool(int32_t)>& on_token) {
  State& s = *state_;
  if (s.shards.size() > 1) return Engine::decode_greedy(token, count, on_token);
  check_greedy_steps(count);
  Q4JIT_CHECK(token >= 0 && token < s.config.vocab_size,
              "decode_greedy: token " + std::to_string(token) + " is outside the vocabulary [0, " +
                  std::to_string(s.config.vocab_size) + ")");
  return s.decode_greedy(token, count, on_token);
}

StepProfile GpuEngine::profile_step(int rows, int repetitions) {
  State& s = *state_;
  Q4JIT_CHECK(rows >= 1 && rows <= s.chunk && s.position + rows <= s.max_positions,
              "profile: " + std::to_string(rows) + " rows at position " +
                  std::to_string(s.position) + " do not fit");
  return s.profile(rows, std::max(repetitions, 1));
}

MemoryUse GpuEngine::memory_use() const {
  return {weight_bytes(), cache_bytes(), workspace_bytes()};
}

GpuEngineStats GpuEngine::stats() const {
  GpuEngineStats stats = state_->stats;
  const KernelCounters counters = state_->service->counters();
  stats.compiles = counters.compiles;
  stats.store_hits = counters.store_hits;
  return stats;
}

std::vector<GpuShardInfo> GpuEngine::shards() const {
  std::vector<GpuShardInfo> infos;
  for (const auto& shard : state_->shards) infos.push_back(state_->info(*shard));
  return infos;
}

int64_t GpuEngine::weight_bytes() const {
  int64_t bytes = 0;
  for (const GpuShardInfo& shard : shards()) bytes += shard.weight_bytes;
  return bytes;
}

int64_t GpuEngine::cache_bytes() const {
  int64_t bytes = 0;
  for (const GpuShardInfo& shard : shards()) bytes += shard.cache_bytes;
  return bytes;
}

int64_t GpuEngine::workspace_bytes() const {
  int64_t bytes = 0;
  for (const GpuShardInfo& shard : shards()) bytes += shard.workspace_bytes;
  return bytes;
}

std::vector<std::string> GpuEngine::describe_choices() const {
  State& s = *state_;
  std::vector<std::string> lines;
  const Shard& shard = *s.shards.front();
  if (shard.model.layers.empty()) return lines;
  const DeviceLayer& layer = shard.model.layers.front();
  std::vector<const DeviceLinear*> linears;
  for (const DeviceLinear& linear : layer.attention_in) linears.push_back(&linear);
  linears.push_back(&layer.o);
  for (const DeviceLinear& linear : layer.mlp_in) linears.push_back(&linear);
  linears.push_back(&layer.down);
  for (int rows : {1, s.chunk}) {
    for (const DeviceLinear* linear : linears) {
      lines.push_back(linear->name + " K" + std::to_string(linear->shape.K) + " N" +
                      std::to_string(linear->shape.N) + " M=" + std::to_string(rows) + ": " +
                      shard.device->dispatch->describe(*linear, rows));
    }
  }
  return lines;
}

std::string GpuShardInfo::describe() const {
  std::string text = device_name + " layers " + layer_range(first_layer, end_layer);
  if (embedding && head) {
    text += " (+ embedding, head)";
  } else if (embedding || head) {
    text += embedding ? " (+ embedding)" : " (+ head)";
  }
  if (gib > 0) {
    char budget[32];
    std::snprintf(budget, sizeof budget, "%g", gib);
    text += std::string(" of ") + budget + " GiB";
  }
  return text + ": weights " + format_bytes(weight_bytes) + ", KV cache " +
         format_bytes(cache_bytes) + ", workspace " + format_bytes(workspace_bytes);
}

}  // namespace q4jit
