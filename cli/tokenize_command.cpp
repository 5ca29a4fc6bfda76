// q4jit tokenize: the ids and pieces the model's tokenizer makes of a text.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "model/tokenizer.hpp"

namespace q4jit::cli {

namespace {

struct TokenizeArgs {
  std::string model_dir;
  std::string text;
  bool bos = false;
  bool json = false;
};

void run_tokenize(const TokenizeArgs& args) {
  const Tokenizer tokenizer = Tokenizer::load(args.model_dir);
  const std::vector<int32_t> ids = tokenizer.encode(args.text, args.bos);
  if (args.json) {
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) pieces.push_back(tokenizer.piece(id));
    const nlohmann::json out = {{"ids", ids}, {"pieces", pieces}};
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("%zu tokens\n", ids.size());
  for (int32_t id : ids) std::printf("%6d  %s\n", id, tokenizer.piece(id).c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* command = app.add_subcommand("tokenize", "Show the token ids and pieces of a text");
  command->add_option("-m,--model", args->model_dir, "Model folder (its tokenizer.model)")
      ->required();
  command->add_option("text", args->text, "Text to tokenize")->required();
  command->add_flag("--bos", args->bos, "Prepend the BOS token");
  command->add_flag("--json", args->json, "Print {\"ids\": [...], \"pieces\": [...]}");
  command->callback([args] { run_tokenize(*args); });
}

}  // namespace q4jit::cli
