// Helpers of the runtime tests: scoped environment variables, the compiler or a skip, running the
// q4jit binary, reading and writing store files. Paths come from the environment when set
// (Q4JIT_BINARY), so the suite also runs from a build copied to a GPU machine without sources.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "runtime/platform.hpp"

namespace q4jit::test {

// Sets (or, with nullopt, unsets) an environment variable for the object's lifetime.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// $Q4JIT_BINARY, else the q4jit built beside this suite.
inline std::filesystem::path q4jit_binary() {
  if (const char* path = std::getenv("Q4JIT_BINARY"); path && *path) return path;
  return Q4JIT_BINARY;
}

struct ShellResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline ShellResult run_shell(const std::string& command) {
  ShellResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace q4jit::test

// Binds `var` to the platform compiler (NVRTC), or skips the test with the reason it is missing.
#define Q4JIT_REQUIRE_COMPILER(var)                                                  \
  auto var##_opened = ::q4jit::open_compiler();                                      \
  if (!var##_opened) GTEST_SKIP() << "no compiler: " << var##_opened.error().what(); \
  const ::q4jit::Compiler& var = *var##_opened.value()
