// The subcommands of the q4jit binary, one file each (cli/<name>_command.cpp). Each add_* function
// registers its subcommand, its options and its callback on the app.
#pragma once

#include <CLI/CLI.hpp>

namespace q4jit::cli {

void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_devices_command(CLI::App& app);
void add_kernels_command(CLI::App& app);
void add_cache_command(CLI::App& app);
void add_bench_kernels_command(CLI::App& app);
void add_tune_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_tuning_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_bench_command(CLI::App& app);

}  // namespace q4jit::cli
