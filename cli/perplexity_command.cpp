// q4jit perplexity: the method of ../shared/docs/PERPLEXITY.md on a JSONL or plain-text file.
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
};

void run_perplexity(const PerplexityArgs& args) {
  const Model model = load_model(args.model_dir);
  const Tokenizer tokenizer = Tokenizer::load(args.model_dir);
  const int window = std::min(args.options.chunk_size, model.config.max_position_embeddings);
  const auto chunks = perplexity_chunks(tokenizer, args.data, args.options, window);
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
  command->callback([args] {
    if (args->options.overlap >= args->options.chunk_size) {
      throw Error("--overlap " + std::to_string(args->options.overlap) +
                  " must be smaller than --chunk-size " + std::to_string(args->options.chunk_size));
    }
    run_perplexity(*args);
  });
}

}  // namespace q4jit::cli
