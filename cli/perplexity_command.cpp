#include "cli/commands.hpp"

namespace q4jit::cli {

void add_perplexity_command(CLI::App& app) { app.add_subcommand("perplexity", "not yet implemented"); }

}  // namespace q4jit::cli
