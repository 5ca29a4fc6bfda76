#include "cli/commands.hpp"

namespace q4jit::cli {

void add_generate_command(CLI::App& app) { app.add_subcommand("generate", "not yet implemented"); }

}  // namespace q4jit::cli
