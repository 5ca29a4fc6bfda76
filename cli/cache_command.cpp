// q4jit cache ls|stats|clear: the compiled-kernel store (cache/kernel_store.hpp).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cache/kernel_store.hpp"
#include "cli/commands.hpp"

namespace q4jit::cli {

namespace {

struct CacheArgs {
  std::string cache_dir;
  bool json = false;
};

KernelStore open_store(const CacheArgs& args) {
  KernelStoreOptions options;
  options.dir = default_kernel_store_dir(args.cache_dir);
  return KernelStore(options);
}

CLI::App* add_leaf(CLI::App& parent, const char* name, const char* description, CacheArgs& args) {
  CLI::App* command = parent.add_subcommand(name, description);
  command->add_option("--cache-dir", args.cache_dir,
                      "Kernel store folder (default $Q4JIT_CACHE_DIR, else "
                      "$XDG_CACHE_HOME/q4jit/kernels, else ~/.cache/q4jit/kernels)");
  command->add_flag("--json", args.json, "Print JSON instead of text");
  return command;
}

void list(const CacheArgs& args) {
  const KernelStore store = open_store(args);
  nlohmann::json out = nlohmann::json::array();
  for (const StoreEntryInfo& entry : store.list()) {
    if (args.json) {
      out.push_back(
          {{"file", entry.file_name}, {"bytes", entry.bytes}, {"age_seconds", entry.age_seconds}});
    } else {
      std::printf("%10lld  %8llds  %s\n", static_cast<long long>(entry.bytes),
                  static_cast<long long>(entry.age_seconds), entry.file_name.c_str());
    }
  }
  if (args.json) std::printf("%s\n", out.dump().c_str());
}

void stats(const CacheArgs& args) {
  const StoreStats stats = open_store(args).stats();
  if (args.json) {
    std::printf("%s\n", nlohmann::json{{"dir", stats.dir.string()},
                                       {"entries", stats.entries},
                                       {"bytes", stats.bytes},
                                       {"size_cap_bytes", stats.size_cap_bytes},
                                       {"temporary_files", stats.temporary_files}}
                            .dump()
                            .c_str());
    return;
  }
  std::printf("dir             %s\n", stats.dir.c_str());
  std::printf("entries         %lld\n", static_cast<long long>(stats.entries));
  std::printf("bytes           %lld (%.1f MB of a %.0f MB cap)\n",
              static_cast<long long>(stats.bytes), stats.bytes / 1e6, stats.size_cap_bytes / 1e6);
  std::printf("temporary files %lld\n", static_cast<long long>(stats.temporary_files));
}

}  // namespace

void add_cache_command(CLI::App& app) {
  auto args = std::make_shared<CacheArgs>();
  CLI::App* cache =
      app.add_subcommand("cache", "List, summarize or empty the compiled-kernel store");
  cache->require_subcommand(1);
  add_leaf(*cache, "ls", "List the stored kernels: bytes, seconds since last use, file name", *args)
      ->callback([args] { list(*args); });
  add_leaf(*cache, "stats", "Entries, bytes and size cap of the store", *args)->callback([args] {
    stats(*args);
  });
  add_leaf(*cache, "clear", "Remove every stored kernel", *args)->callback([args] {
    const KernelStore store = open_store(*args);
    const int64_t removed = store.clear();
    std::printf("removed %lld files from %s\n", static_cast<long long>(removed),
                store.dir().c_str());
  });
}

}  // namespace q4jit::cli
