// Batched compile and load of a family's variants (batch_loader.hpp).
#include "tuner/batch_loader.hpp"

#include <algorithm>
#include <set>

namespace q4jit {

std::vector<CompileRequest> batched_requests(const KernelFamily& family,
                                             const std::vector<std::string>& expressions,
                                             const CompileTarget& target, int per_program) {
  // Expressions compiled for the architecture-specific target go into programs of their own.
  std::vector<std::string> distinct, specific;
  std::set<std::string> seen;
  for (const std::string& expression : expressions) {
    if (!seen.insert(expression).second) continue;
    const bool own = target_for_expression(family, expression, target).arch_specific;
    (own ? specific : distinct).push_back(expression);
  }
  const size_t plain_count = distinct.size();
  distinct.insert(distinct.end(), specific.begin(), specific.end());
  const KernelSource source = embedded_kernel_source(family.source);
  const size_t step = static_cast<size_t>(std::max(per_program, 1));
  std::vector<CompileRequest> requests;
  for (size_t first = 0; first < distinct.size();) {
    const size_t limit = first < plain_count ? plain_count : distinct.size();
    const size_t end = std::min(limit, first + step);
    CompileRequest request;
    request.family = family.name;
    request.config = "batch" + std::to_string(end - first) + "." + std::to_string(first);
    request.source = source;
    request.target = target_for_expression(family, distinct[first], target);
    request.name_expressions.assign(distinct.begin() + first, distinct.begin() + end);
    requests.push_back(std::move(request));
    first = end;
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
