// q4jit bench: the protocol of ../shared/docs/BENCHMARK.md on a model folder, through the Engine
// the other commands use (make_engine): load time, memory for weights and KV cache, prompt speed
// (one forward over random ids), greedy generation speed after a long and after a 4-token prompt,
// and per matmul shape the kernel the engine would run timed at each M (bench_matmul_shapes.hpp;
// GPU only, skipped with the reason otherwise). Engine::forward returns host logits, so every
// clock read below follows a synchronized device. Progress on stderr; text or one JSON line out.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/bench_matmul_shapes.hpp"
#include "cli/commands.hpp"
#include "cli/engine_choice.hpp"
#include "common/error.hpp"
#include "model/gpu/gpu_engine.hpp"
#include "model/sampling.hpp"
#include "model/weights.hpp"
#include "tuner/problem_key.hpp"

namespace q4jit::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string model_dir;
  bool json = false;
  DeviceOption device;
  int prompt_tokens = 1920;
  int gen_tokens = 128;
  std::string rows = "1,2,4,8,16";
  bool no_matmul = false;
  uint64_t seed = 1;
};

// Tokens per second of one timed stretch.
struct Speed {
  int context = 0;  // positions in the cache before the stretch
  int tokens = 0;
  double seconds = 0;
  double tokens_per_second() const { return seconds > 0 ? tokens / seconds : 0; }
  nlohmann::json json() const {
    return {{"context_tokens", context},
            {"tokens", tokens},
            {"seconds", seconds},
            {"tokens_per_second", tokens_per_second()}};
  }
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void progress(const std::string& line) {
  std::fprintf(stderr, "q4jit: bench: %s\n", line.c_str());
  std::fflush(stderr);
}

std::vector<int32_t> random_ids(int count, int vocab_size, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> id(0, vocab_size - 1);
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int32_t& value : ids) value = id(rng);
  return ids;
}

int32_t greedy(const std::vector<float>& logits) {
  return argmax(logits);
}

// gen_tokens greedy steps of one token each after the cache's context, timed together, as
// `q4jit generate --greedy` runs them (Engine::decode_greedy); `next` is the token the context's
// last logits chose.
Speed time_decode(Engine& engine, int32_t next, int gen_tokens) {
  const int context = engine.position();
  const auto start = Clock::now();
  engine.decode_greedy(next, gen_tokens);
  return {context, gen_tokens, seconds_since(start)};
}

void check_lengths(const BenchArgs& args, const LlamaConfig& config) {
  if (args.prompt_tokens < 1) throw Error("--prompt-tokens: must be at least 1");
  if (args.gen_tokens < 1) throw Error("--gen-tokens: must be at least 1");
  if (int64_t(args.prompt_tokens) + args.gen_tokens > config.max_position_embeddings) {
    throw Error("--prompt-tokens " + std::to_string(args.prompt_tokens) + " + --gen-tokens " +
                std::to_string(args.gen_tokens) + ": more than the model's " +
                std::to_string(config.max_position_embeddings) + " positions");
  }
}

nlohmann::json model_json(const Model& model) {
  const LlamaConfig& c = model.config;
  const QuantizationSummary& q = model.quantization;
  return {{"layers", c.num_hidden_layers},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"heads", c.num_attention_heads},
          {"kv_heads", c.num_key_value_heads},
          {"vocab_size", c.vocab_size},
          {"quantized", q.quantized},
          {"group_size", q.group_size},
          {"act_order", q.act_order},
          {"sym", q.sym},
          {"weight_bytes_on_disk", model.weight_bytes}};
}

// The per-shape section, or why it is skipped.
nlohmann::json matmul_section(const BenchArgs& args, const std::string& engine_device) {
  if (args.no_matmul) return {{"skipped", "--no-matmul"}};
  if (engine_device == "cpu") {
    return {{"skipped", args.device.device == "cpu"
                            ? "--device cpu: the per-shape kernels run on a GPU"
                            : "the model ran on the CPU (no usable GPU): the per-shape kernels "
                              "run on a GPU"}};
  }
  MatmulBenchOptions options;
  options.rows = parse_m_buckets(args.rows);
  options.tuning_db = args.device.tuning_db;
  options.progress = progress;
  try {
    return to_json(bench_model_matmuls(args.model_dir, options));
  } catch (const Error& error) {
    progress(std::string("matmul shapes skipped: ") + error.what());
    return {{"skipped", error.what()}};
  }
}

// GPU only: one decode step (graph replay) and one 512-token prefill step split by category
// (GpuEngine::profile_step), so the next optimization is clear.
nlohmann::json where_time_goes(Engine& engine) {
  auto* gpu = dynamic_cast<GpuEngine*>(&engine);
  if (gpu == nullptr) return {{"skipped", "not a GPU engine"}};
  nlohmann::json steps = nlohmann::json::array();
  for (int rows : {1, std::min(512, gpu->max_positions() - gpu->position() - 1)}) {
    if (rows < 1) continue;
    const StepProfile profile = gpu->profile_step(rows);
    nlohmann::json categories = nlohmann::json::object();
    for (const auto& [category, us] : profile.categories_us) categories[category] = us;
    steps.push_back({{"rows", rows},
                     {"position", gpu->position()},
                     {"step_us", profile.step_us},
                     {"op_us_by_category", categories},
                     {"op_total_us", profile.events_total_us}});
  }
  return steps;
}

// The engine's shards (--gpu-split; one when unsplit), or an empty array on the CPU.
nlohmann::json splits_json(const Engine& engine) {
  nlohmann::json splits = nlohmann::json::array();
  const auto* gpu = dynamic_cast<const GpuEngine*>(&engine);
  if (gpu == nullptr) return splits;
  for (const GpuShardInfo& shard : gpu->shards()) {
    splits.push_back({{"device", shard.device},
                      {"device_name", shard.device_name},
                      {"gib", shard.gib},
                      {"first_layer", shard.first_layer},
                      {"end_layer", shard.end_layer},
                      {"embedding", shard.embedding},
                      {"head", shard.head},
                      {"weights_bytes", shard.weight_bytes},
                      {"cache_bytes", shard.cache_bytes},
                      {"workspace_bytes", shard.workspace_bytes}});
  }
  return splits;
}

void print_splits(const nlohmann::json& splits) {
  if (splits.size() < 2) return;
  for (size_t i = 0; i < splits.size(); ++i) {
    const auto& split = splits[i];
    std::printf(
        "  split %-8zu%s layers %d-%d: weights %.1f MB, KV cache %.1f MB, workspace %.1f MB\n",
        i + 1, split["device_name"].get<std::string>().c_str(), split["first_layer"].get<int>(),
        split["end_layer"].get<int>() - 1, split["weights_bytes"].get<double>() / 1e6,
        split["cache_bytes"].get<double>() / 1e6, split["workspace_bytes"].get<double>() / 1e6);
  }
}

void print_time_split(const nlohmann::json& steps) {
  if (!steps.is_array()) return;
  for (const auto& step : steps) {
    std::printf("step of %-4d    %.1f us at position %d; op by op:", step["rows"].get<int>(),
                step["step_us"].get<double>(), step["position"].get<int>());
    for (const auto& [category, us] : step["op_us_by_category"].items())
      std::printf(" %s %.1f", category.c_str(), us.get<double>());
    std::printf(" (sum %.1f us)\n", step["op_total_us"].get<double>());
  }
}

void print_text(const nlohmann::json& report) {
  const auto& memory = report["memory"];
  std::printf("%s on %s\n", report["model"].get<std::string>().c_str(),
              report["device"].get<std::string>().c_str());
  std::printf("load            %.2f s\n", report["load_seconds"].get<double>());
  std::printf("memory          weights %.1f MB, KV cache %.1f MB, workspace %.1f MB\n",
              memory["weights_bytes"].get<double>() / 1e6,
              memory["cache_bytes"].get<double>() / 1e6,
              memory["workspace_bytes"].get<double>() / 1e6);
  print_splits(memory["splits"]);
  const auto& prompt = report["prompt"];
  std::printf("prompt          %d tokens in %.3f s: %.1f tokens/s\n", prompt["tokens"].get<int>(),
              prompt["seconds"].get<double>(), prompt["tokens_per_second"].get<double>());
  for (const char* key : {"generation_long_context", "generation_short_context"}) {
    const auto& speed = report[key];
    std::printf("generation      %d tokens after %d: %.3f s, %.1f tokens/s\n",
                speed["tokens"].get<int>(), speed["context_tokens"].get<int>(),
                speed["seconds"].get<double>(), speed["tokens_per_second"].get<double>());
  }
  print_time_split(report["where_time_goes"]);
  const auto& matmul = report["matmul"];
  if (matmul.contains("skipped")) {
    std::printf("matmul shapes   skipped: %s\n", matmul["skipped"].get<std::string>().c_str());
    return;
  }
  std::printf("matmul shapes   read ceiling %.2f TB/s\n", matmul["ceiling_tbps"].get<double>());
  for (const auto& shape : matmul["shapes"]) {
    for (const auto& row : shape["rows"]) {
      std::printf("  %6lld->%-6lld %-8s M=%-3d %9.2f us %6.3f TB/s %5.1f%%  %s\n",
                  shape["K"].get<long long>(), shape["N"].get<long long>(),
                  shape["projections"].get<std::string>().c_str(), row["M"].get<int>(),
                  row["us"].get<double>(), row["tbps"].get<double>(),
                  100 * row["fraction_of_ceiling"].get<double>(),
                  row["kernel"].get<std::string>().c_str());
    }
  }
}

void run_bench(const BenchArgs& args) {
  if (!args.no_matmul) parse_m_buckets(args.rows);  // a bad --m fails before minutes of work
  const auto load_start = Clock::now();
  const Model model = load_model(args.model_dir);
  check_lengths(args, model.config);
  std::unique_ptr<Engine> engine =
      make_engine(model, args.device, args.prompt_tokens + args.gen_tokens);
  const double load_seconds = seconds_since(load_start);
  if (engine->max_positions() < args.prompt_tokens + args.gen_tokens)
    throw Error(args.model_dir + ": the engine holds " + std::to_string(engine->max_positions()) +
                " positions, fewer than --prompt-tokens + --gen-tokens");
  const std::string device = engine->device_name();
  char loaded[64];
  std::snprintf(loaded, sizeof loaded, " in %.2f s", load_seconds);
  progress("loaded on " + device + loaded);

  std::mt19937 rng(uint32_t(args.seed));
  const int vocab = model.config.vocab_size;
  const std::vector<int32_t> prompt = random_ids(args.prompt_tokens, vocab, rng);
  const std::vector<int32_t> short_prompt = random_ids(std::min(4, args.prompt_tokens), vocab, rng);
  // A first pass loads whatever the engine loads lazily (kernels, graphs) outside the clocks.
  progress("warm-up: " + std::to_string(args.prompt_tokens) + "-token prompt and 2 steps");
  engine->reset();
  time_decode(*engine, greedy(engine->forward(prompt, false)), std::min(2, args.gen_tokens));

  progress("prompt: " + std::to_string(args.prompt_tokens) + " tokens");
  engine->reset();
  const auto start = Clock::now();
  const int32_t after_prompt = greedy(engine->forward(prompt, false));
  const Speed prompt_speed{0, args.prompt_tokens, seconds_since(start)};
  const MemoryUse memory = engine->memory_use();  // workspace grown to the prompt's size
  const nlohmann::json splits = splits_json(*engine);
  progress("generation: " + std::to_string(args.gen_tokens) + " tokens after " +
           std::to_string(args.prompt_tokens));
  const Speed long_context = time_decode(*engine, after_prompt, args.gen_tokens);
  progress("generation: " + std::to_string(args.gen_tokens) + " tokens after " +
           std::to_string(short_prompt.size()));
  engine->reset();
  const Speed short_context =
      time_decode(*engine, greedy(engine->forward(short_prompt, false)), args.gen_tokens);
  const nlohmann::json time_split = where_time_goes(*engine);
  engine = nullptr;  // the per-shape timing needs the device memory back

  nlohmann::json report = {
      {"model", args.model_dir},
      {"device", device},
      {"config", model_json(model)},
      {"load_seconds", load_seconds},
      {"memory",
       {{"weights_bytes", memory.weights_bytes},
        {"cache_bytes", memory.cache_bytes},
        {"workspace_bytes", memory.workspace_bytes},
        {"splits", splits}}},
      {"prompt", prompt_speed.json()},
      {"generation_long_context", long_context.json()},
      {"generation_short_context", short_context.json()},
      {"where_time_goes", time_split},
  };
  report["matmul"] = matmul_section(args, device);
  if (args.json) {
    std::printf("%s\n", report.dump().c_str());
  } else {
    print_text(report);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* command = app.add_subcommand(
      "bench",
      "Benchmark a model: load time, memory, prompt and generation speed, per-shape matmul "
      "time and bandwidth (../shared/docs/BENCHMARK.md)");
  command->add_option("-m,--model", args->model_dir, "Model folder (config.json, *.safetensors)")
      ->required();
  command->add_flag("--json", args->json, "Print one JSON line instead of text");
  add_device_option(*command, args->device);
  command
      ->add_option("--prompt-tokens", args->prompt_tokens,
                   "Random token ids in the prompt forward, and the long generation context")
      ->capture_default_str();
  command->add_option("--gen-tokens", args->gen_tokens, "Greedy tokens generated per measurement")
      ->capture_default_str();
  command
      ->add_option(
          "--m", args->rows,
          "Comma-separated rows (M) of the per-shape timing, each rounded up to its bucket "
          "(1, 2, 4, 8, ...)")
      ->capture_default_str();
  command->add_flag("--no-matmul", args->no_matmul, "Skip the per-shape matmul timing");
  command->add_option("--seed", args->seed, "Seed of the random token ids")->capture_default_str();
  command->callback([args] { run_bench(*args); });
}

}  // namespace q4jit::cli
