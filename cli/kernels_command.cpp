// q4jit kernels compile: compiles every kernel family's default configuration (or its whole
// tuning space) for the named architectures through the compiler service and its store. Needs no
// GPU: CI runs it for sm_75, sm_80, sm_86, sm_89 and sm_90 with NVRTC, and for gfx90a, gfx908 and
// gfx1030 with hiprtc (AMD; families built on NVIDIA-only instructions are skipped there).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "kernel_sources/family.hpp"
#include "runtime/hip/hip_archs.hpp"
#include "runtime/kernel_service.hpp"
#include "runtime/platform.hpp"

namespace q4jit::cli {

namespace {

struct CompileArgs {
  std::string archs;
  std::string platform;  // "cuda", "hip" or empty: as the architectures (or the GPU) say
  bool all_configs = false;
  bool json = false;
  bool no_store = false;
  bool verbose = false;
  int jobs = 0;
  std::string cache_dir;
};

// One architecture to compile for: an NVIDIA sm (NVRTC) or an AMD gfx (hiprtc).
struct Arch {
  Platform platform = Platform::cuda;
  int sm = 0;
  std::string gfx;
};

std::vector<Arch> parse_archs(const std::string& list) {
  std::vector<Arch> archs;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (item.empty()) continue;
    if (item.starts_with("gfx")) {
      archs.push_back({Platform::hip, 0, parse_gfx(item)});
    } else {
      archs.push_back({Platform::cuda, parse_sm(item), ""});
    }
  }
  if (archs.empty()) throw Error("--arch: no architecture named");
  return archs;
}

// The architecture of device 0 of a backend.
Arch device_arch(const Backend& backend) {
  const DeviceInfo device = backend.device_info(0);
  if (backend.platform() == "hip") return {Platform::hip, 0, parse_gfx(device.arch_name)};
  return {Platform::cuda, device.sm(), ""};
}

// The named architectures, else the GPU's, else the CI ones of the platform (CUDA by default).
std::vector<Arch> chosen_archs(const CompileArgs& args) {
  if (!args.archs.empty()) {
    std::vector<Arch> archs = parse_archs(args.archs);
    for (const Arch& arch : archs) {
      if (!args.platform.empty() && arch.platform != parse_platform(args.platform)) {
        throw Error("--arch: " + (arch.gfx.empty() ? "sm_" + std::to_string(arch.sm) : arch.gfx) +
                    " is not a " + args.platform + " architecture");
      }
    }
    return archs;
  }
  auto backend =
      args.platform.empty() ? open_gpu_backend() : open_gpu_backend(parse_platform(args.platform));
  if (backend) return {device_arch(*backend.value())};
  if (args.platform == "hip") {
    return {
        {Platform::hip, 0, "gfx90a"}, {Platform::hip, 0, "gfx908"}, {Platform::hip, 0, "gfx1030"}};
  }
  std::vector<Arch> archs;
  for (int sm : {75, 80, 86, 89, 90}) archs.push_back({Platform::cuda, sm, ""});
  return archs;
}

// A CUBIN when NVRTC knows the architecture, else PTX it can emit (select_target); for AMD the
// gfx target, refused here in one line when hiprtc cannot compile for it (key_options checks).
CompileTarget target_for(const Arch& arch, const Compiler& compiler) {
  if (arch.platform == Platform::cuda) return select_target(arch.sm, compiler.supported_archs());
  CompileTarget target;
  target.gfx = arch.gfx;
  CompileRequest probe;
  probe.target = target;
  compiler.key_options(probe);
  return target;
}

// Why a family is not compiled for a target, or empty when it is.
std::string skip_reason(const KernelFamily& family, const Arch& arch) {
  if (arch.platform == Platform::hip) return family.amd ? "" : "uses NVIDIA-only instructions";
  return family.supports(arch.sm) ? "" : "needs sm_" + std::to_string(family.min_sm) + " or newer";
}

// The compiler and service of one platform, opened once for all its architectures.
struct PlatformCompile {
  std::unique_ptr<Compiler> compiler;
  std::unique_ptr<KernelService> service;
  std::vector<CompileRequest> requests;
};

void run_compile(const CompileArgs& args) {
  std::optional<KernelStore> store;
  if (!args.no_store) {
    KernelStoreOptions options;
    options.dir = default_kernel_store_dir(args.cache_dir);
    store.emplace(options);
  }
  // Every target first, so that a refused architecture stops the command before any output.
  std::vector<PlatformCompile> platforms(2);  // indexed by Platform
  std::vector<std::pair<Arch, CompileTarget>> targets;
  for (const Arch& arch : chosen_archs(args)) {
    PlatformCompile& compile = platforms[static_cast<int>(arch.platform)];
    if (!compile.compiler) {
      auto opened = open_compiler(arch.platform);
      if (!opened) throw opened.error();
      compile.compiler = std::move(opened.value());
      compile.service =
          std::make_unique<KernelService>(*compile.compiler, store ? &*store : nullptr);
    }
    targets.emplace_back(arch, target_for(arch, *compile.compiler));
  }
  for (const auto& [arch, target] : targets) {
    for (const KernelFamily& family : kernel_families()) {
      if (const std::string reason = skip_reason(family, arch); !reason.empty()) {
        if (!args.json)
          std::printf("%-10s %s: not compiled for %s\n", family.name.c_str(), reason.c_str(),
                      target.label().c_str());
        continue;
      }
      for (const KernelVariant& variant :
           args.all_configs ? family.all_variants : family.default_variants) {
        platforms[static_cast<int>(arch.platform)].requests.push_back(
            make_request(family, variant, target));
      }
    }
  }
  const int jobs = args.jobs > 0 ? args.jobs : std::max(1u, std::thread::hardware_concurrency());
  const auto started = std::chrono::steady_clock::now();
  std::vector<CompileRequest> requests;
  std::vector<Result<CompiledKernel>> results;
  KernelCounters counters;
  for (PlatformCompile& compile : platforms) {
    if (!compile.service) continue;
    for (auto& result : compile.service->get_all(compile.requests, jobs)) {
      results.push_back(std::move(result));
    }
    requests.insert(requests.end(), compile.requests.begin(), compile.requests.end());
    const KernelCounters part = compile.service->counters();
    counters.compiles += part.compiles;
    counters.failures += part.failures;
    counters.store_hits += part.store_hits;
    counters.store_misses += part.store_misses;
    counters.compile_seconds += part.compile_seconds;
    counters.store_seconds += part.store_seconds;
  }
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
      "Compile every kernel family's default configuration (no GPU needed) for NVIDIA "
      "(NVRTC) or AMD (hiprtc) architectures and store the binaries; reports the time per "
      "kernel and architecture");
  compile->add_option("--arch", args->archs,
                      "Comma-separated architectures: NVIDIA sm_XY (NVRTC), e.g. "
                      "sm_75,sm_80,sm_86,sm_89,sm_90, and/or AMD gfxXYZ (hiprtc), e.g. "
                      "gfx90a,gfx908,gfx1030 (default: the GPU's, else the five sm ones)");
  compile
      ->add_option("--platform", args->platform,
                   "cuda or hip: without --arch, the architectures of that platform (its GPU's, "
                   "else sm_75..sm_90 or gfx90a,gfx908,gfx1030); with --arch, a check")
      ->check(CLI::IsMember({"cuda", "hip"}));
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
