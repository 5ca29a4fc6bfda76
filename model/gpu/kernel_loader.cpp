// Compile-once, load-once kernels of an engine (kernel_loader.hpp).
#include "model/gpu/kernel_loader.hpp"

namespace q4jit {

KernelLoader::KernelLoader(Backend& backend, KernelService& service)
    : backend_(backend),
      service_(service),
      target_(select_target(backend.current_device().sm(), service.compiler().supported_archs())) {}

std::string KernelLoader::key_of(const CompileRequest& request) {
  std::string key = request.family + "|" + request.config + "|" + request.target.label();
  for (const std::string& expression : request.name_expressions) key += "|" + expression;
  for (const std::string& option : request.extra_options) key += "|" + option;
  return key;
}

const LoadedModule& KernelLoader::load(const CompileRequest& request,
                                       const CompiledKernel* compiled) {
  const std::string key = key_of(request);
  if (auto found = modules_.find(key); found != modules_.end()) return *found->second;
  Result<CompiledKernel> result =
      compiled ? Result<CompiledKernel>(*compiled) : service_.get(request);
  if (!result.ok()) {
    throw Error(request.family + " " + request.config + ": " + result.error().what())
        .with("detail", result.error().describe());
  }
  auto module = std::make_unique<LoadedModule>(backend_.load_module(result.value()));
  return *modules_.emplace(key, std::move(module)).first->second;
}

const Function& KernelLoader::function(const CompileRequest& request,
                                       const std::string& name_expression) {
  return load(request, nullptr).function(name_expression);
}

const Function& KernelLoader::function(const KernelFamily& family, const KernelVariant& variant) {
  return function(make_request(family, variant, target_), variant.name_expression);
}

void KernelLoader::preload(const std::vector<CompileRequest>& requests, int jobs) {
  std::vector<CompileRequest> missing;
  for (const CompileRequest& request : requests) {
    if (!modules_.count(key_of(request))) missing.push_back(request);
  }
  std::vector<Result<CompiledKernel>> compiled = service_.get_all(missing, jobs);
  for (size_t i = 0; i < missing.size(); ++i) {
    if (!compiled[i].ok()) {
      throw Error(missing[i].family + " " + missing[i].config + ": " + compiled[i].error().what())
          .with("detail", compiled[i].error().describe());
    }
    load(missing[i], &compiled[i].value());
  }
}

}  // namespace q4jit
