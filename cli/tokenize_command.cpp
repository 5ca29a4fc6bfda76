#include "cli/commands.hpp"

namespace q4jit::cli {

void add_tokenize_command(CLI::App& app) { app.add_subcommand("tokenize", "not yet implemented"); }

}  // namespace q4jit::cli
