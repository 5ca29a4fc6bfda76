// The few non-virtual parts of the backend interface (backend.hpp).
#include "runtime/backend.hpp"

#include "common/error.hpp"

namespace q4jit {

const Function& LoadedModule::function(const std::string& name_expression) const {
  std::string known;
  for (const auto& [expression, function] : functions) {
    if (expression == name_expression) return function;
    known += (known.empty() ? "" : ", ") + expression;
  }
  throw Error("module: no kernel '" + name_expression + "' (it has: " + known + ")");
}

}  // namespace q4jit
