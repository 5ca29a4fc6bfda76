// q4jit kernels compile: compiles every kernel family's default configuration (or its whole
// tuning space) for the named architectures through the compiler service and its store. Needs no
// GPU: CI runs it for sm_75, sm_80, sm_86, sm_89 and sm_90.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "kernel_sources/family.hpp"
#include "runtime/kernel_service.hpp"
#include "runtime/platform.hpp"

namespace q4jit::cli {

namespace {

struct CompileArgs {
  std::string archs;
  bool all_configs = false;
  bool json = false;
  bool no_store = false;
  bool verbose = false;
  int jobs = 0;
  std::string cache_dir;
};

std::vector<int> parse_archs(const std::string& list) {
  std::vector<int> archs;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) archs.push_back(parse_sm(item));
  }
  if (archs.empty()) throw Error("--arch: no architecture named");
  return archs;
}

// The named architectures, else the GPU's, else the five CI ones.
std::vector<int> chosen_archs(const CompileArgs& args) {
  if (!args.archs.empty()) return parse_archs(args.archs);
  auto backend = open_gpu_backend();
  if (backend) return {backend.value()->device_info(0).sm()};
  return {75, 80, 86, 89, 90};
}

// A CUBIN when the compiler knows the architecture, else PTX it can emit (select_target).
CompileTarget target_for(int sm, const Compiler& compiler) {
  return select_target(sm, compiler.supported_archs());
}

void run_compile(const CompileArgs& args) {
  auto opened = open_compiler();
  if (!opened) throw opened.error();
  const Compiler& compiler = *opened.value();
  std::optional<KernelStore> store;
  if (!args.no_store) {
    KernelStoreOptions options;
    options.dir = default_kernel_store_dir(args.cache_dir);
    store.emplace(options);
  }
  KernelService service(compiler, store ? &*store : nullptr);

  std::vector<CompileRequest> requests;
  for (int sm : chosen_archs(args)) {
    const CompileTarget target = target_for(sm, compiler);
    for (const KernelFamily& family : kernel_families()) {
      if (!family.supports(sm)) {
        if (!args.json)
          std::printf("%-10s needs sm_%d or newer: not compiled for %s\n", family.name.c_str(),
                      family.min_sm, target.label().c_str());
        continue;
      }
      for (const KernelVariant& variant :
           args.all_configs ? family.all_variants : family.default_variants) {
        requests.push_back(make_request(family, variant, target));
      }
    }
  }
  const int jobs = args.jobs > 0 ? args.jobs : std::max(1u, std::thread::hardware_concurrency());
  const auto started = std::chrono::steady_clock::now();
  std::vector<Result<CompiledKernel>> results = service.get_all(requests, jobs);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  nlohmann::json rows = nlohmann::json::array();
  int failed = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const CompileRequest& request = requests[i];
    nlohmann::json row = {
        {"family", request.family}, {"config", request.config}, {"target", request.target.label()}};
    if (results[i]) {
      const CompiledKernel& kernel = results[i].value();
      row["status"] = kernel.from_store ? "stored" : "compiled";
      row["seconds"] = kernel.seconds;
      row["binary_bytes"] = kernel.binary.size();
      if (!args.json) {
        std::printf("%-10s %-16s %-11s %-9s %7.3f s %8zu bytes\n", request.family.c_str(),
                    request.config.c_str(), request.target.label().c_str(),
                    kernel.from_store ? "stored" : "compiled", kernel.seconds,
                    kernel.binary.size());
      }
    } else {
      ++failed;
      row["status"] = "failed";
      row["error"] = results[i].error().describe();
      if (!args.json) std::fprintf(stderr, "%s\n", results[i].error().describe().c_str());
    }
    rows.push_back(row);
  }
  const KernelCounters counters = service.counters();
  if (args.json) {
    std::printf("%s\n", nlohmann::json{{"kernels", rows},
                                       {"wall_seconds", wall},
                                       {"jobs", jobs},
                                       {"compiles", counters.compiles},
                                       {"compile_seconds", counters.compile_seconds},
                                       {"store_hits", counters.store_hits},
                                       {"store_misses", counters.store_misses},
                                       {"failures", counters.failures}}
                            .dump()
                            .c_str());
  } else {
    std::printf(
        "total: %zu kernels in %.3f s wall on %d jobs: %lld compiled (%.3f s of compiling), "
        "%lld from the store, %d failed\n",
        results.size(), wall, jobs, static_cast<long long>(counters.compiles),
        counters.compile_seconds, static_cast<long long>(counters.store_hits), failed);
  }
  if (args.verbose) std::fprintf(stderr, "q4jit: kernels: %s\n", counters.summary().c_str());
  if (failed > 0)
    throw Error("kernels compile: " + std::to_string(failed) + " of " +
                std::to_string(results.size()) + " kernels failed to compile");
}

}  // namespace

void add_kernels_command(CLI::App& app) {
  auto args = std::make_shared<CompileArgs>();
  CLI::App* kernels = app.add_subcommand("kernels", "Work with the embedded kernel templates");
  kernels->require_subcommand(1);
  CLI::App* compile = kernels->add_subcommand(
      "compile",
      "Compile every kernel family's default configuration (no GPU needed) and store "
      "the binaries; reports the time per kernel and architecture");
  compile->add_option("--arch", args->archs,
                      "Comma-separated architectures, e.g. sm_75,sm_80,sm_86,sm_89,sm_90 "
                      "(default: the GPU's, else those five)");
  compile->add_flag("--all-configs", args->all_configs,
                    "Compile every configuration in each family's tuning space");
  compile->add_flag("--json", args->json, "Print one JSON object instead of text");
  compile->add_option("--jobs", args->jobs, "Compiles at once (default: the number of cores)");
  compile->add_option("--cache-dir", args->cache_dir,
                      "Kernel store folder (default $Q4JIT_CACHE_DIR, else "
                      "$XDG_CACHE_HOME/q4jit/kernels, else ~/.cache/q4jit/kernels)");
  compile->add_flag("--no-store", args->no_store, "Neither read nor write the kernel store");
  compile->add_flag("-v,--verbose", args->verbose, "Print the service's counters on stderr");
  compile->callback([args] { run_compile(*args); });
}

}  // namespace q4jit::cli
