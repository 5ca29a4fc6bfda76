#include "common/error.hpp"

namespace q4jit {

Error::Error(const std::string& message, std::source_location where)
    : std::runtime_error(message), where_(where) {}

Error& Error::with(std::string key, std::string value) {
  context_.emplace_back(std::move(key), std::move(value));
  return *this;
}

Error& Error::with_hint(std::string hint) {
  hint_ = std::move(hint);
  return *this;
}

std::string Error::where() const {
  return std::string(where_.file_name()) + ":" + std::to_string(where_.line()) + " (" +
         where_.function_name() + ")";
}

std::string Error::describe() const {
  std::string text = what();
  for (const auto& [key, value] : context_) text += "\n  " + key + ": " + value;
  if (!hint_.empty()) text += "\n  hint: " + hint_;
  return text;
}

}  // namespace q4jit
