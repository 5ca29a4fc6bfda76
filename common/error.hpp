// The one exception type of q4jit, and the small Result<T> used where failure is expected data
// (a tuning candidate that does not compile is a result to record, not an exception to unwind).
//
// Convention for messages: one line, "<what it concerns>: <the problem>", where the subject is a
// file path, a tensor name or a call ("model/config.json: hidden_size is missing"). Context that
// helps a developer but would clutter that line (an NVRTC log, the options) goes in context();
// advice for the user goes in hint(). Only cli/ turns an Error into an exit code.
#pragma once

#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace q4jit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message,
                 std::source_location where = std::source_location::current());

  // Adds a key/value pair of context (e.g. "nvrtc_log", "options", "config"). Returns *this so a
  // throw site can chain: throw Error("...").with("config", cfg).with("log", log);
  Error& with(std::string key, std::string value);
  Error& with_hint(std::string hint);

  const std::vector<std::pair<std::string, std::string>>& context() const { return context_; }
  const std::string& hint() const { return hint_; }
  // Source location of the throw, "file:line (function)", for --verbose output.
  std::string where() const;
  // The one-line message followed by context and hint, one per line.
  std::string describe() const;

 private:
  std::source_location where_;
  std::vector<std::pair<std::string, std::string>> context_;
  std::string hint_;
};

// A value or the Error that prevented it.
template <typename T>
class Result {
 public:
  Result(T value) : state_(std::move(value)) {}
  Result(Error error) : state_(std::move(error)) {}

  bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }
  T& value() {
    if (!ok()) throw error();
    return std::get<T>(state_);
  }
  const T& value() const {
    if (!ok()) throw error();
    return std::get<T>(state_);
  }
  const Error& error() const { return std::get<Error>(state_); }

 private:
  std::variant<T, Error> state_;
};

}  // namespace q4jit

// Throws q4jit::Error with the message when the condition is false. For invariants of input data,
// not for programming errors inside one function (use assert for those).
#define Q4JIT_CHECK(condition, message)                \
  do {                                                 \
    if (!(condition)) throw ::q4jit::Error((message)); \
  } while (0)
