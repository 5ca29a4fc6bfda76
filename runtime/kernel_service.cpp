// The compiler service (kernel_service.hpp): store first, then compile and store.
#include "runtime/kernel_service.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/compile_key.hpp"
#include "runtime/thread_pool.hpp"

namespace q4jit {

namespace {

using Clock = std::chrono::steady_clock;

int64_t microseconds_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

StoredKernel to_stored(const CompiledKernel& kernel, const StoreKey& key) {
  return {key, kernel.binary, kernel.lowered_names, kernel.log};
}

CompiledKernel from_stored(StoredKernel stored, const CompileRequest& request) {
  CompiledKernel kernel;
  kernel.family = request.family;
  kernel.config = request.config;
  kernel.target = request.target;
  kernel.key = stored.key.hash;
  kernel.binary = std::move(stored.binary);
  kernel.log = std::move(stored.log);
  kernel.lowered_names = std::move(stored.lowered_names);
  kernel.from_store = true;
  return kernel;
}

}  // namespace

KernelServiceOptions KernelServiceOptions::from_environment() {
  KernelServiceOptions options;
  const char* value = std::getenv("Q4JIT_ASSERT_NO_COMPILE");
  options.assert_no_compile = value != nullptr && std::strcmp(value, "1") == 0;
  return options;
}

std::string KernelCounters::summary() const {
  char text[200];
  std::snprintf(text, sizeof text,
                "compiles %lld (%.3f s), failures %lld, store hits %lld (%.3f s), misses %lld",
                static_cast<long long>(compiles), compile_seconds, static_cast<long long>(failures),
                static_cast<long long>(store_hits), store_seconds,
                static_cast<long long>(store_misses));
  return text;
}

KernelService::KernelService(const Compiler& compiler, const KernelStore* store,
                             KernelServiceOptions options)
    : compiler_(compiler), store_(store), options_(options) {}

Result<CompiledKernel> KernelService::get(const CompileRequest& request) {
  try {
    const std::string key = compile_key(request, compiler_);
    if (store_ != nullptr) {
      const auto started = Clock::now();
      std::optional<StoredKernel> stored = store_->load(store_key(request, compiler_, key));
      if (stored) {
        const int64_t elapsed = microseconds_since(started);
        store_microseconds_ += elapsed;
        ++hits_;
        CompiledKernel kernel = from_stored(std::move(*stored), request);
        kernel.seconds = elapsed * 1e-6;
        return kernel;
      }
      ++misses_;
    }
    return compile_and_store(request, key);
  } catch (const Error& error) {
    ++failures_;
    return error;
  }
}

Result<CompiledKernel> KernelService::compile_and_store(const CompileRequest& request,
                                                        const std::string& key) {
  if (options_.assert_no_compile) {
    ++failures_;
    return Error(request.family + "." + request.config + " (" + request.target.label() +
                 "): a compile was needed but Q4JIT_ASSERT_NO_COMPILE=1 forbids it")
        .with("key", key);
  }
  const auto started = Clock::now();
  Result<CompiledKernel> compiled = compiler_.compile(request);
  compile_microseconds_ += microseconds_since(started);
  if (!compiled) {
    ++failures_;
    return compiled;
  }
  ++compiles_;
  if (store_ != nullptr) {
    try {
      store_->save(to_stored(compiled.value(), store_key(request, compiler_, key)));
    } catch (const Error& error) {
      // The kernel is good; only the next run loses. Say so once, on stderr.
      std::fprintf(stderr, "q4jit: warning: %s; compiled kernel not stored\n", error.what());
    }
  }
  return compiled;
}

std::vector<Result<CompiledKernel>> KernelService::get_all(
    const std::vector<CompileRequest>& requests, int jobs) {
  std::vector<std::optional<Result<CompiledKernel>>> slots(requests.size());
  {
    ThreadPool pool(std::min<int>(std::max(jobs, 1), std::max<int>(requests.size(), 1)));
    for (size_t i = 0; i < requests.size(); ++i) {
      pool.submit([this, &requests, &slots, i] { slots[i].emplace(get(requests[i])); });
    }
    pool.wait();
  }
  std::vector<Result<CompiledKernel>> results;
  results.reserve(slots.size());
  for (auto& slot : slots) results.push_back(std::move(*slot));
  return results;
}

KernelCounters KernelService::counters() const {
  KernelCounters counters;
  counters.compiles = compiles_;
  counters.failures = failures_;
  counters.store_hits = hits_;
  counters.store_misses = misses_;
  counters.compile_seconds = compile_microseconds_ * 1e-6;
  counters.store_seconds = store_microseconds_ * 1e-6;
  return counters;
}

CompileTarget target_for_expression(const KernelFamily& family, const std::string& expression,
                                    const CompileTarget& target) {
  CompileTarget result = target;
  result.arch_specific = !family.arch_specific_prefix.empty() &&
                         expression.starts_with(family.arch_specific_prefix) && !target.amd() &&
                         !target.ptx && target.sm == family.arch_specific_sm;
  return result;
}

CompileRequest make_request(const KernelFamily& family, const KernelVariant& variant,
                            const CompileTarget& target) {
  CompileRequest request;
  request.family = family.name;
  request.config = variant.config;
  request.source = embedded_kernel_source(family.source);
  request.name_expressions = {variant.name_expression};
  request.target = target_for_expression(family, variant.name_expression, target);
  return request;
}

}  // namespace q4jit
