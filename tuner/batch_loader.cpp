// Batched compile and load of a family's variants (batch_loader.hpp).
#include "tuner/batch_loader.hpp"

#include <algorithm>
#include <set>

namespace q4jit {

std::vector<CompileRequest> batched_requests(const KernelFamily& family,
                                             const std::vector<std::string>& expressions,
                                             const CompileTarget& target, int per_program) {
  std::vector<std::string> distinct;
  std::set<std::string> seen;
  for (const std::string& expression : expressions) {
    if (seen.insert(expression).second) distinct.push_back(expression);
  }
  const KernelSource source = embedded_kernel_source(family.source);
  const size_t step = static_cast<size_t>(std::max(per_program, 1));
  std::vector<CompileRequest> requests;
  for (size_t first = 0; first < distinct.size(); first += step) {
    const size_t end = std::min(distinct.size(), first + step);
    CompileRequest request;
    request.family = family.name;
    request.config = "batch" + std::to_string(end - first) + "." + std::to_string(first);
    request.source = source;
    request.target = target;
    request.name_expressions.assign(distinct.begin() + first, distinct.begin() + end);
    requests.push_back(std::move(request));
  }
  return requests;
}

std::map<std::string, Result<LoadedVariant>> load_batched(
    Backend& backend, KernelService& service, const KernelFamily& family,
    const std::vector<std::string>& expressions, int per_program, int jobs) {
  const CompileTarget target =
      select_target(backend.current_device().sm(), service.compiler().supported_archs());
  const std::vector<CompileRequest> requests =
      batched_requests(family, expressions, target, per_program);
  std::vector<Result<CompiledKernel>> compiled = service.get_all(requests, jobs);
  std::map<std::string, Result<LoadedVariant>> loaded;
  for (size_t i = 0; i < requests.size(); ++i) {
    std::shared_ptr<const LoadedModule> module;
    Error failure("");
    bool failed = !compiled[i].ok();
    if (failed) failure = compiled[i].error();
    if (!failed) {
      try {
        module = std::make_shared<const LoadedModule>(backend.load_module(compiled[i].value()));
      } catch (const Error& error) {
        failed = true;
        failure = error;
      }
    }
    for (const std::string& expression : requests[i].name_expressions) {
      if (failed) {
        loaded.emplace(expression, failure);
      } else {
        loaded.emplace(expression, LoadedVariant{module, module->function(expression)});
      }
    }
  }
  return loaded;
}

}  // namespace q4jit
