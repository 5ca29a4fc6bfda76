// GpuEngine: the Llama forward pass on the GPU (gpu_engine.hpp). One State holds everything the
// device owns; members are declared so that buffers go before the backend that frees them.
#include "model/gpu/gpu_engine.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "cache/kernel_store.hpp"
#include "cache/tuning_db.hpp"
#include "model/gpu/device_model.hpp"
#include "model/gpu/gpu_ops.hpp"
#include "model/gpu/kernel_loader.hpp"
#include "model/gpu/matmul_dispatch.hpp"
#include "runtime/platform.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit {

namespace {

std::unique_ptr<Backend> open_backend(int ordinal) {
  Result<std::unique_ptr<Backend>> backend = open_gpu_backend();
  if (!backend) throw backend.error();
  if (backend.value()->device_count() <= ordinal) {
    throw Error("GPU: no device " + std::to_string(ordinal) + " (" +
                std::to_string(backend.value()->device_count()) + " found)");
  }
  backend.value()->select_device(ordinal);
  return std::move(backend.value());
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

}  // namespace

struct GpuEngine::State {
  // Platform first: destroyed last.
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Compiler> compiler;
  std::unique_ptr<KernelStore> store;
  std::unique_ptr<KernelService> service;
  std::unique_ptr<TuningDb> db;
  std::unique_ptr<MatmulChooser> chooser;
  std::unique_ptr<KernelLoader> loader;
  std::unique_ptr<GpuOps> ops;
  std::unique_ptr<MatmulDispatch> dispatch;

  LlamaConfig config;
  GpuEngineOptions options;
  int max_positions = 0;
  int chunk = 0;
  int position = 0;
  GpuEngineStats stats;

  Stream stream;
  DeviceModel model;
  DeviceBuffer key_cache, value_cache;  // [L][P][Hkv][D] fp16 each
  DeviceBuffer inputs;                  // int32: tokens [chunk], positions [chunk], length
  DeviceBuffer x, normed, scratch;      // fp16 [chunk, C]
  DeviceBuffer attention_in;            // fp16 [chunk, Nq + Nk + Nv]
  DeviceBuffer attention_out;           // fp16 [chunk, H D]
  DeviceBuffer mlp_in;                  // fp16 [chunk, 2F]
  DeviceBuffer mlp_hidden;              // fp16 [chunk, F]
  DeviceBuffer logits;                  // fp32 [chunk, V]
  DeviceBuffer bad_tokens;              // int32
  DeviceBuffer matmul_scratch;    // the projections' scratch: gathered x, a dequantized weight
  DeviceBuffer decode_workspace;  // attention_decode's counters (zero) and partials
  std::map<DecodePlan, GraphExec> decode_graphs;  // by attention plan
  bool decode_warm = false;  // kernels of a decode step loaded: capture is safe
  // Set while profiling: an event is recorded after each op, labelled with its category.
  std::vector<std::pair<std::string, Event>>* marks = nullptr;

  State(const Model& model_in, GpuEngineOptions options_in);
  void allocate_activations();
  void prepare_rows(int rows);
  void warm_up();
  void tune(const Model& model_in);
  void run_layer(int l, int rows, int first_position, const DecodePlan& plan);
  void enqueue_forward(int rows, int first_position, const DecodePlan& plan, bool all_logits);
  void decode_step(int first_position);
  std::vector<float> run_chunk(std::span<const int32_t> tokens, bool all_logits);
  uint64_t tokens_address() const { return inputs.raw(); }
  uint64_t positions_address() const { return inputs.raw() + 4 * uint64_t(chunk); }
  uint64_t length_address() const { return inputs.raw() + 8 * uint64_t(chunk); }
  void mark(const char* category) {
    if (marks == nullptr) return;
    marks->emplace_back(category, backend->create_event());
    backend->record(marks->back().second, stream);
  }
  void set_inputs(int rows, int first_position);
  StepProfile profile(int rows, int repetitions);
  void progress(const std::string& line) const {
    if (options.progress) options.progress(line);
  }
};

GpuEngine::State::State(const Model& model_in, GpuEngineOptions options_in)
    : config(model_in.config), options(std::move(options_in)) {
  max_positions =
      options.max_positions > 0 ? options.max_positions : config.max_position_embeddings;
  chunk = std::clamp(options.prefill_chunk, 1, max_positions);
  backend = open_backend(options.device);
  compiler = open_nvrtc();
  KernelStoreOptions store_options;
  store_options.dir = default_kernel_store_dir(options.kernel_cache);
  store = std::make_unique<KernelStore>(store_options);
  service = std::make_unique<KernelService>(*compiler, store.get());
  db = open_tuning_db(options.tuning_db);
  const DeviceInfo& device = backend->current_device();
  if (options.tune == TuneMode::automatic && model_in.quantization.quantized) tune(model_in);
  chooser =
      std::make_unique<MatmulChooser>(db.get(), device_fingerprint(device, *compiler), device);
  loader = std::make_unique<KernelLoader>(*backend, *service);
  ops = std::make_unique<GpuOps>(*loader);
  dispatch = std::make_unique<MatmulDispatch>(*loader, *chooser, options.force_path);
  stream = backend->create_stream();
  if (options.overlap_launches && backend->set_overlapped_launches(stream, true))
    progress("kernels launch overlapped (programmatic dependent launch)");

  progress("uploading weights to " + device.name);
  const auto fuse = [&](const MatmulShapeKey& fused, std::span<const MatmulShapeKey> parts) {
    return chooser->fuse(fused, parts);
  };
  model = upload_model(
      *backend, model_in,
      [&](int done, int layers) {
        if (done == layers || done % 8 == 0)
          progress("uploaded layer " + std::to_string(done) + "/" + std::to_string(layers));
      },
      fuse);
  allocate_activations();
  ops->set_decode_limits(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                         max_positions);
  decode_workspace =
      backend->allocate(size_t(std::max<int64_t>(ops->decode_workspace_bytes(), 16)));
  backend->memset(decode_workspace.raw(), 0, decode_workspace.bytes(), {});
  progress("preparing kernels");
  warm_up();
  const KernelCounters counters = service->counters();
  progress("kernels: " + counters.summary());
}

void GpuEngine::State::allocate_activations() {
  const size_t C = config.hidden_size, F = config.intermediate_size;
  const size_t HD = size_t(config.num_attention_heads) * config.head_dim;
  const size_t KVD = size_t(config.num_key_value_heads) * config.head_dim;
  const size_t rows = size_t(chunk);
  const size_t cache = size_t(config.num_hidden_layers) * max_positions * KVD * 2;
  key_cache = backend->allocate(cache);
  value_cache = backend->allocate(cache);
  inputs = backend->allocate(4 * (2 * rows + 1));
  x = backend->allocate(rows * C * 2);
  normed = backend->allocate(rows * C * 2);
  scratch = backend->allocate(rows * C * 2);
  attention_in = backend->allocate(rows * (HD + 2 * KVD) * 2);
  attention_out = backend->allocate(rows * HD * 2);
  mlp_in = backend->allocate(rows * 2 * F * 2);
  mlp_hidden = backend->allocate(rows * F * 2);
  logits = backend->allocate(rows * size_t(config.vocab_size) * 4);
  bad_tokens = backend->allocate(16);
  backend->memset(bad_tokens.raw(), 0, 16, {});
}

// Chooses and loads the projections' kernels at `rows` rows and grows their scratch to what they
// need (dropping captured graphs, which hold the old address).
void GpuEngine::State::prepare_rows(int rows) {
  int64_t needed = 16;
  for (const DeviceLayer& layer : model.layers) {
    for (const DeviceLinear& linear : layer.attention_in)
      needed = std::max(needed, dispatch->prepare(linear, rows));
    for (const DeviceLinear& linear : layer.mlp_in)
      needed = std::max(needed, dispatch->prepare(linear, rows));
    needed = std::max(needed, dispatch->prepare(layer.o, rows));
    needed = std::max(needed, dispatch->prepare(layer.down, rows));
  }
  if (matmul_scratch && int64_t(matmul_scratch.bytes()) >= needed) return;
  backend->synchronize(stream);
  decode_graphs.clear();
  matmul_scratch = backend->allocate(size_t(needed));
  backend->memset(matmul_scratch.raw(), 0, size_t(needed), {});
  backend->synchronize({});
}

// --tune auto: tunes what the database lacks for this model (nothing, and at once, when all of it
// is stored), so that the chooser finds winners for every shape and row bucket the engine runs.
void GpuEngine::State::tune(const Model& model_in) {
  TuneOptions tune_options;
  tune_options.budget_seconds = options.tune_budget;
  tune_options.m_buckets = engine_m_buckets(chunk);
  if (options.progress) {
    tune_options.progress = [this](const std::string& line) { progress("tune: " + line); };
  }
  const TuneMissingResult result =
      tune_missing(*backend, *service, *db, model_in.dir, tune_options);
  if (result.counters.tuned > 0) {
    progress("tuned " + std::to_string(result.counters.tuned) + " problems in " +
             std::to_string(int(result.counters.seconds)) + " s");
  }
}

// Loads every kernel a request can need now, not in the middle of the first one: the projections
// at each M bucket up to a chunk, then one chunk-sized prefill (all logits) and one decode step
// for the ops. The cache is emptied afterwards.
void GpuEngine::State::warm_up() {
  for (int rows = 1; rows < chunk; rows *= 2) prepare_rows(rows);
  prepare_rows(chunk);
  const int rows = std::min(chunk, max_positions - 1);
  if (rows >= 2) run_chunk(std::vector<int32_t>(size_t(rows), 0), true);
  const int32_t token = 0;
  run_chunk(std::span<const int32_t>(&token, 1), false);
  position = 0;
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

// One layer. The residual add of the layer's last projection (down, into `scratch`) is left to
// the next add_rms_norm: the next layer's input norm, or the final norm.
void GpuEngine::State::run_layer(int l, int rows, int first_position, const DecodePlan& plan) {
  const DeviceLayer& layer = model.layers[l];
  const int C = config.hidden_size, F = config.intermediate_size;
  const int H = config.num_attention_heads, Hkv = config.num_key_value_heads;
  const int D = config.head_dim;
  const float eps = config.rms_norm_eps;
  const uint64_t ws = matmul_scratch.raw();
  const uint64_t qkv_order = input_order(layer.attention_in);
  ops->add_rms_norm(normed.raw(), x.raw(), l == 0 ? 0 : scratch.raw(), layer.input_norm.raw(),
                    qkv_order, rows, C, eps, stream);
  mark("norm");

  // q, k, v: one fused output [rows, Nq+Nk+Nv], or three packed regions.
  uint64_t parts[3];
  int strides[3];
  const bool fused_qkv = layer.attention_in.size() == 1;
  uint64_t region = attention_in.raw();
  const int widths[3] = {H * D, Hkv * D, Hkv * D};
  for (int i = 0; i < 3; ++i) {
    parts[i] =
        fused_qkv ? attention_in.raw() + 2 * uint64_t(i ? H * D + (i - 1) * Hkv * D : 0) : region;
    strides[i] = fused_qkv ? (H + 2 * Hkv) * D : widths[i];
    region += 2 * uint64_t(rows) * widths[i];
  }
  for (size_t i = 0; i < layer.attention_in.size(); ++i)
    dispatch->run(layer.attention_in[i], rows, normed.raw(), parts[i], ws, stream, qkv_order != 0);
  mark("matmul");

  const int64_t layer_offset = kv_cache_layer_offset(l, max_positions, Hkv, D) * 2;
  const uint64_t keys = key_cache.raw() + layer_offset, values = value_cache.raw() + layer_offset;
  const float theta = config.rope_theta;
  const float rope_scale =
      config.rope_scaling.kind == RopeScaling::Kind::linear ? config.rope_scaling.factor : 1.0f;
  ops->rope_cache({rows, H, Hkv, D, strides[0], strides[1], strides[2], max_positions}, parts[0],
                  parts[1], parts[2], keys, values, positions_address(), theta, rope_scale, stream);
  mark("rope");
  const float scale = 1.0f / std::sqrt(float(D));
  // Decode attention writes its output in the o projection's sorted order (no gather launch).
  const bool o_sorted = rows == 1 && layer.o.quantized && layer.o.shape.act_order;
  if (rows == 1) {
    ops->attention_decode(attention_out.raw(), parts[0], keys, values, decode_workspace.raw(),
                          length_address(), plan, scale, o_sorted ? layer.o.sorted_of.raw() : 0,
                          stream);
  } else {
    ops->attention_prefill({rows, first_position, H, Hkv, D, strides[0], H * D},
                           attention_out.raw(), parts[0], keys, values, scale, stream);
  }
  mark("attention");
  dispatch->run(layer.o, rows, attention_out.raw(), scratch.raw(), ws, stream, o_sorted);
  mark("matmul");

  const uint64_t mlp_order = input_order(layer.mlp_in);
  ops->add_rms_norm(normed.raw(), x.raw(), scratch.raw(), layer.post_norm.raw(), mlp_order, rows, C,
                    eps, stream);
  mark("norm");
  const bool fused_mlp = layer.mlp_in.size() == 1;
  const uint64_t gate = mlp_in.raw();
  const uint64_t up = mlp_in.raw() + 2 * uint64_t(fused_mlp ? F : int64_t(rows) * F);
  const int stride = fused_mlp ? 2 * F : F;
  dispatch->run(layer.mlp_in[0], rows, normed.raw(), gate, ws, stream, mlp_order != 0);
  if (!fused_mlp)
    dispatch->run(layer.mlp_in[1], rows, normed.raw(), up, ws, stream, mlp_order != 0);
  mark("matmul");
  ops->silu_mul(mlp_hidden.raw(), gate, up, rows, F, stride, stream);
  mark("silu");
  dispatch->run(layer.down, rows, mlp_hidden.raw(), scratch.raw(), ws, stream,
                layer.down_input_sorted);
  mark("matmul");
}

// Everything of one forward over `rows` tokens already in `inputs`, ending with fp32 logits of
// the last row (or of every row) in `logits`. Enqueued only: a graph capture records it.
void GpuEngine::State::enqueue_forward(int rows, int first_position, const DecodePlan& plan,
                                       bool all_logits) {
  const int C = config.hidden_size, V = config.vocab_size;
  mark("start");
  ops->embedding(x.raw(), model.embed.raw(), tokens_address(), rows, V, C, bad_tokens.raw(),
                 stream);
  mark("embedding");
  for (int l = 0; l < config.num_hidden_layers; ++l) run_layer(l, rows, first_position, plan);
  // The last layer's residual add, on the rows whose logits are wanted only.
  const int logit_rows = all_logits ? rows : 1;
  const uint64_t first_row = 2 * uint64_t(all_logits ? 0 : rows - 1) * C;
  const uint64_t last_delta = config.num_hidden_layers > 0 ? scratch.raw() + first_row : 0;
  ops->add_rms_norm(normed.raw(), x.raw() + first_row, last_delta, model.final_norm.raw(), 0,
                    logit_rows, C, config.rms_norm_eps, stream);
  mark("norm");
  ops->lm_head(logits.raw(), normed.raw(), model.lm_head_weight(), logit_rows, C, V, stream);
  mark("lm_head");
}

void GpuEngine::State::decode_step(int first_position) {
  const DecodePlan plan = ops->decode_plan(first_position + 1);
  if (!options.graphs || !decode_warm) {
    enqueue_forward(1, first_position, plan, false);
    decode_warm = true;
    return;
  }
  auto found = decode_graphs.find(plan);
  if (found == decode_graphs.end()) {
    backend->begin_capture(stream);
    enqueue_forward(1, first_position, plan, false);
    found = decode_graphs.emplace(plan, backend->end_capture(stream)).first;
    ++stats.graph_captures;
  }
  backend->launch_graph(found->second, stream);
  ++stats.graph_replays;
}

void GpuEngine::State::set_inputs(int rows, int first_position) {
  std::vector<int32_t> host(2 * size_t(chunk) + 1, 0);
  for (int t = 0; t < rows; ++t) host[chunk + t] = first_position + t;
  host[2 * size_t(chunk)] = first_position + rows;
  backend->copy_to_device(inputs.raw(), host.data(), host.size() * 4, stream);
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

StepProfile GpuEngine::State::profile(int rows, int repetitions) {
  StepProfile profile;
  set_inputs(rows, position);
  const DecodePlan plan = rows == 1 ? ops->decode_plan(position + 1) : DecodePlan{};
  if (rows == 1) {
    decode_step(position);  // the first step runs plainly and loads every kernel
    decode_step(position);  // captures the graph of this split count if needed
    profile.step_us = median_us(*backend, stream, repetitions,
                                [&] { backend->launch_graph(decode_graphs.at(plan), stream); });
  } else {
    prepare_rows(rows);
    profile.step_us = median_us(*backend, stream, std::max(1, repetitions / 10),
                                [&] { enqueue_forward(rows, position, plan, false); });
  }
  // The same step captured with an event record node after each op, replayed: every interval
  // is measured on the device (no host launch in it); a record between two kernels keeps the
  // second from overlapping the first, so the intervals add up to a little more than step_us.
  std::vector<std::pair<std::string, Event>> events;
  marks = &events;
  backend->begin_capture(stream);
  enqueue_forward(rows, position, plan, false);
  const GraphExec marked = backend->end_capture(stream);
  marks = nullptr;
  std::map<std::string, std::vector<double>> samples;  // category -> per-replay sums
  const int replays = rows == 1 ? 7 : 3;
  for (int replay = 0; replay <= replays; ++replay) {
    backend->launch_graph(marked, stream);
    backend->synchronize(stream);
    if (replay == 0) continue;  // warm-up
    std::map<std::string, double> sums;
    for (size_t i = 1; i < events.size(); ++i)
      sums[events[i].first] += 1000.0 * backend->elapsed_ms(events[i - 1].second, events[i].second);
    for (const auto& [category, us] : sums) samples[category].push_back(us);
  }
  for (auto& [category, values] : samples) {
    std::sort(values.begin(), values.end());
    profile.categories_us.emplace_back(category, values[values.size() / 2]);
    profile.events_total_us += values[values.size() / 2];
  }
  return profile;
}

std::vector<float> GpuEngine::State::run_chunk(std::span<const int32_t> tokens, bool all_logits) {
  const int rows = int(tokens.size());
  std::vector<int32_t> host(2 * size_t(chunk) + 1, 0);
  std::copy(tokens.begin(), tokens.end(), host.begin());
  for (int t = 0; t < rows; ++t) host[chunk + t] = position + t;
  host[2 * size_t(chunk)] = position + rows;  // length: positions attended by the last token
  backend->copy_to_device(inputs.raw(), host.data(), host.size() * 4, stream);
  if (rows == 1) {
    decode_step(position);
  } else {
    prepare_rows(rows);
    enqueue_forward(rows, position, DecodePlan{}, all_logits);
  }
  const size_t count = size_t(all_logits ? rows : 1) * config.vocab_size;
  std::vector<float> out(count);
  backend->copy_to_host(out.data(), logits.raw(), count * 4, stream);
  backend->synchronize(stream);
  position += rows;
  return out;
}

GpuEngine::GpuEngine(const Model& model, GpuEngineOptions options)
    : state_(std::make_unique<State>(model, std::move(options))) {}

GpuEngine::~GpuEngine() = default;

const LlamaConfig& GpuEngine::config() const {
  return state_->config;
}

std::string GpuEngine::device_name() const {
  return "cuda:" + std::to_string(state_->options.device) + " (" +
         state_->backend->current_device().name + ")";
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

int64_t GpuEngine::weight_bytes() const {
  return state_->model.bytes;
}

int64_t GpuEngine::cache_bytes() const {
  return int64_t(state_->key_cache.bytes() + state_->value_cache.bytes());
}

int64_t GpuEngine::workspace_bytes() const {
  const State& s = *state_;
  return int64_t(s.inputs.bytes() + s.x.bytes() + s.normed.bytes() + s.scratch.bytes() +
                 s.attention_in.bytes() + s.attention_out.bytes() + s.mlp_in.bytes() +
                 s.mlp_hidden.bytes() + s.logits.bytes() + s.matmul_scratch.bytes() +
                 s.decode_workspace.bytes());
}

std::vector<std::string> GpuEngine::describe_choices() const {
  State& s = *state_;
  std::vector<std::string> lines;
  if (s.model.layers.empty()) return lines;
  const DeviceLayer& layer = s.model.layers.front();
  std::vector<const DeviceLinear*> linears;
  for (const DeviceLinear& linear : layer.attention_in) linears.push_back(&linear);
  linears.push_back(&layer.o);
  for (const DeviceLinear& linear : layer.mlp_in) linears.push_back(&linear);
  linears.push_back(&layer.down);
  for (int rows : {1, s.chunk}) {
    for (const DeviceLinear* linear : linears) {
      lines.push_back(linear->name + " K" + std::to_string(linear->shape.K) + " N" +
                      std::to_string(linear->shape.N) + " M=" + std::to_string(rows) + ": " +
                      s.dispatch->describe(*linear, rows));
    }
  }
  return lines;
}

}  // namespace q4jit
