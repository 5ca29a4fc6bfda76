// Entry point of the q4jit binary: builds the CLI11 app from the subcommands in commands.hpp and
// turns a q4jit::Error into one line on stderr and exit code 1 (the only place that does).
#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "common/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "q4jit: runs 4-bit GPTQ Llama models with kernels compiled for and tuned on the GPU "
      "present.\nRun 'q4jit <command> --help' for the options of a command."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the options of every command");
  q4jit::cli::add_info_command(app);
  q4jit::cli::add_tokenize_command(app);
  q4jit::cli::add_generate_command(app);
  q4jit::cli::add_perplexity_command(app);
  q4jit::cli::add_devices_command(app);
  q4jit::cli::add_kernels_command(app);
  q4jit::cli::add_cache_command(app);
  q4jit::cli::add_bench_kernels_command(app);
  q4jit::cli::add_tune_command(app);
  q4jit::cli::add_report_command(app);
  q4jit::cli::add_tuning_command(app);
  q4jit::cli::add_synth_command(app);
  q4jit::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  } catch (const q4jit::Error& error) {
    std::fprintf(stderr, "q4jit: error: %s\n", error.what());
    if (!error.hint().empty()) std::fprintf(stderr, "q4jit: hint: %s\n", error.hint().c_str());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "q4jit: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
