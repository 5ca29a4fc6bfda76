#include "cli/commands.hpp"

namespace q4jit::cli {

void add_info_command(CLI::App& app) { app.add_subcommand("info", "not yet implemented"); }

}  // namespace q4jit::cli
