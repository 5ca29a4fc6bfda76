// q4jit generate: streams a continuation of a prompt, with the sampling options of model/sampling.
#include <chrono>
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/engine_choice.hpp"
#include "model/generate.hpp"
#include "model/weights.hpp"

namespace q4jit::cli {

namespace {

struct GenerateArgs {
  std::string model_dir;
  std::string prompt;
  GenerateOptions options;
  DeviceOption device;
  int max_seq_len = 0;
  bool no_bos = false;
  bool no_echo = false;
  bool json = false;
  bool seed_given = false;
};

void add_sampling_options(CLI::App& command, GenerateArgs& args) {
  SamplingParams& sampling = args.options.sampling;
  command.add_flag("--greedy", sampling.greedy, "Always take the most likely token");
  command.add_option("--temperature", sampling.temperature, "Softmax temperature (<= 0: greedy)")
      ->capture_default_str();
  command.add_option("--top-k", sampling.top_k, "Keep the K most likely tokens (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command.add_option("--top-p", sampling.top_p, "Nucleus: smallest set with this mass (1: off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command.add_option("--min-p", sampling.min_p, "Drop tokens below min-p times the top one's p")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command.add_option("--typical", sampling.typical, "Locally typical sampling mass (1: off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command
      .add_option("--repetition-penalty", sampling.repetition_penalty,
                  "Penalty for tokens already seen (1: off; 1.1 to 1.2 is typical)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      .add_option("--repetition-range", sampling.repetition_range,
                  "How many recent tokens the penalty looks at (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command.add_option("--seed", sampling.seed, "Random seed (default: a new one each run)")
      ->each([&args](const std::string&) { args.seed_given = true; });
}

nlohmann::json to_json(const GenerateArgs& args, const GenerateResult& result,
                       const Engine& engine) {
  const double rate =
      result.generate_seconds > 0 ? result.generated_ids.size() / result.generate_seconds : 0.0;
  return {{"prompt", args.prompt},
          {"prompt_ids", result.prompt_ids},
          {"generated_ids", result.generated_ids},
          {"text", result.text},
          {"stop_reason", result.stop_reason},
          {"prompt_seconds", result.prompt_seconds},
          {"generate_seconds", result.generate_seconds},
          {"tokens_per_second", rate},
          {"device", engine.device_name()},
          {"seed", args.options.sampling.seed}};
}

void run_generate(GenerateArgs& args) {
  if (!args.seed_given) args.options.sampling.seed = std::random_device{}();
  args.options.add_bos = !args.no_bos;
  const Model model = load_model(args.model_dir);
  const Tokenizer tokenizer = Tokenizer::load(args.model_dir);
  int positions = args.max_seq_len;
  if (positions <= 0) {  // room for the prompt and the new tokens, not the model's whole window
    const size_t prompt_tokens = tokenizer.encode(args.prompt, args.options.add_bos).size();
    positions = static_cast<int>(prompt_tokens) + args.options.max_new_tokens;
  }
  positions = std::min(positions, model.config.max_position_embeddings);
  std::unique_ptr<Engine> engine = make_engine(model, args.device, positions);

  const bool stream = !args.json;
  if (stream && !args.no_echo) std::fputs(args.prompt.c_str(), stdout);
  std::fflush(stdout);
  const GenerateResult result =
      generate(*engine, tokenizer, args.prompt, args.options, [stream](std::string_view text) {
        if (!stream) return;
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      });
  if (args.json) {
    std::printf("%s\n", to_json(args, result, *engine)
                            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                            .c_str());
    return;
  }
  std::printf("\n");
  const double rate =
      result.generate_seconds > 0 ? result.generated_ids.size() / result.generate_seconds : 0.0;
  std::fprintf(stderr,
               "q4jit: %zu tokens in %.2f s (%.1f tokens/s) on %s after a %zu-token prompt "
               "(%.2f s); stopped: %s\n",
               result.generated_ids.size(), result.generate_seconds, rate,
               engine->device_name().c_str(), result.prompt_ids.size(), result.prompt_seconds,
               result.stop_reason.c_str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* command =
      app.add_subcommand("generate", "Continue a prompt, streaming the text as it is generated");
  command->add_option("-m,--model", args->model_dir, "Model folder")->required();
  command->add_option("-p,--prompt", args->prompt, "The prompt")->required();
  command
      ->add_option("-n,--max-new-tokens", args->options.max_new_tokens, "Most tokens to generate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_sampling_options(*command, *args);
  command->add_option("--stop", args->options.stop_strings,
                      "Stop when the text contains this string (repeatable)");
  command->add_flag(
      "--ignore-eos", [args](int64_t) { args->options.stop_at_eos = false; },
      "Keep generating past the end-of-sequence token");
  command->add_flag("--no-bos", args->no_bos, "Do not prepend the BOS token to the prompt");
  command->add_flag("--no-echo", args->no_echo, "Print only the generated text, not the prompt");
  command
      ->add_option("--max-seq-len", args->max_seq_len,
                   "KV cache length (default: prompt + max-new-tokens, at most the model's)")
      ->check(CLI::PositiveNumber);
  add_device_option(*command, args->device);
  command->add_flag("--json", args->json,
                    "Print one JSON line (ids, text, timings) instead of streaming");
  command->callback([args] { run_generate(*args); });
}

}  // namespace q4jit::cli
