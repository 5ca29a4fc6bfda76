// q4jit perplexity: the method of ../shared/docs/PERPLEXITY.md on a JSONL or plain-text file.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/engine_choice.hpp"
#include "cli/progress.hpp"
#include "model/perplexity.hpp"
#include "model/weights.hpp"

namespace q4jit::cli {

namespace {

struct PerplexityArgs {
  std::string model_dir;
  std::string data;
  PerplexityOptions options;
  DeviceOption device;
  bool json = false;
  bool validate = false;
};

struct PathResult {
  std::string label;  // "gpu q4 kernels (tuned)", "gpu dequantize+gemm", "cpu reference"
  std::string device;
  PerplexityResult result;
  double seconds = 0;
};

PathResult run_path(const std::string& label, const Model& model, DeviceOption device, int window,
                    const std::vector<std::vector<int32_t>>& chunks) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> engine = make_engine(model, device, window);
  Progress progress("perplexity (" + label + "): chunk", static_cast<int>(chunks.size()));
  PathResult out{label, engine->device_name(), {}, 0};
  out.result = perplexity(*engine, chunks, [&progress](int done, int) { progress.update(done); });
  progress.finish();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

// --validate: the same chunks through the GPU's q4 kernels, the GPU's dequantize + GEMM path and
// the CPU reference; their perplexities side by side.
void run_validate(const PerplexityArgs& args, const Model& model, int window,
                  const std::vector<std::vector<int32_t>>& chunks) {
  DeviceOption gpu = args.device;
  gpu.device = "gpu";
  std::vector<PathResult> results;
  results.push_back(run_path("gpu q4 kernels", model, gpu, window, chunks));
  gpu.force_path = MatmulPath::dequant_gemm;
  results.push_back(run_path("gpu dequantize+gemm", model, gpu, window, chunks));
  DeviceOption cpu = args.device;
  cpu.device = "cpu";
  results.push_back(run_path("cpu reference", model, cpu, window, chunks));
  const double reference = results.back().result.perplexity;
  if (args.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const PathResult& r : results)
      rows.push_back({{"path", r.label},
                      {"device", r.device},
                      {"perplexity", r.result.perplexity},
                      {"tokens_scored", r.result.tokens_scored},
                      {"relative_to_cpu", r.result.perplexity / reference - 1},
                      {"seconds", r.seconds}});
    std::printf("%s\n", nlohmann::json{{"model", args.model_dir},
                                       {"data", args.data},
                                       {"chunks", results.back().result.chunks},
                                       {"paths", rows}}
                            .dump()
                            .c_str());
    return;
  }
  std::printf("%-22s %12s %12s %9s\n", "path", "perplexity", "vs cpu", "seconds");
  for (const PathResult& r : results) {
    std::printf("%-22s %12.4f %+11.4f%% %9.1f\n", r.label.c_str(), r.result.perplexity,
                100 * (r.result.perplexity / reference - 1), r.seconds);
  }
}

void run_perplexity(const PerplexityArgs& args) {
  const Model model = load_model(args.model_dir);
  const Tokenizer tokenizer = Tokenizer::load(args.model_dir);
  const int window = std::min(args.options.chunk_size, model.config.max_position_embeddings);
  const auto chunks = perplexity_chunks(tokenizer, args.data, args.options, window);
  if (args.validate) {
    run_validate(args, model, window, chunks);
    return;
  }
  std::unique_ptr<Engine> engine = make_engine(model, args.device, window);
  Progress progress("perplexity: chunk", static_cast<int>(chunks.size()));
  const PerplexityResult result =
      perplexity(*engine, chunks, [&progress](int done, int) { progress.update(done); });
  progress.finish();
  if (args.json) {
    const nlohmann::json out = {
        {"model", args.model_dir},         {"data", args.data},
        {"device", engine->device_name()}, {"chunk_size", window},
        {"chunks", result.chunks},         {"tokens_scored", result.tokens_scored},
        {"nll_sum", result.nll_sum},       {"perplexity", result.perplexity}};
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("chunks           %d\n", result.chunks);
  std::printf("scored tokens    %lld\n", static_cast<long long>(result.tokens_scored));
  std::printf("perplexity       %.4f\n", result.perplexity);
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* command = app.add_subcommand(
      "perplexity",
      "Perplexity on a JSONL file (one record = one chunk) or a plain-text file (sliding windows)");
  command->add_option("-m,--model", args->model_dir, "Model folder")->required();
  command->add_option("--data", args->data, "A .jsonl file of {\"text\": ...} records, or text")
      ->required()
      ->check(CLI::ExistingFile);
  command
      ->add_option("--chunk-size", args->options.chunk_size,
                   "Tokens per chunk (at most the model's max positions)")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  command->add_option("--chunks", args->options.chunks, "Most chunks to score (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command
      ->add_option("--overlap", args->options.overlap,
                   "Plain text: tokens shared by consecutive windows")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command
      ->add_option("--min-length", args->options.min_length,
                   "JSONL: skip records whose text has this many characters or fewer")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_device_option(*command, args->device);
  command->add_flag("--json", args->json, "Print one JSON line");
  command->add_flag("--validate", args->validate,
                    "Run the chunks through the GPU's q4 kernels, the GPU's dequantize+GEMM path "
                    "and the CPU reference, and print the three perplexities (needs a GPU)");
  command->callback([args] {
    if (args->options.overlap >= args->options.chunk_size) {
      throw Error("--overlap " + std::to_string(args->options.overlap) +
                  " must be smaller than --chunk-size " + std::to_string(args->options.chunk_size));
    }
    run_perplexity(*args);
  });
}

}  // namespace q4jit::cli
