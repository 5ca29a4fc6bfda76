// NVRTC compiles (nvrtc_compiler.hpp): header search, the options builder, compile and extract.
#include "runtime/cuda/nvrtc_compiler.hpp"

#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/sha256.hpp"
#include "runtime/compile_key.hpp"

namespace q4jit {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Where cuda_fp16.h may be: the environment's toolkit, the default install, beside NVRTC.
std::vector<fs::path> include_candidates(const NvrtcLibrary& nvrtc) {
  std::vector<fs::path> candidates;
  for (const char* variable : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* root = std::getenv(variable); root && *root) {
      candidates.push_back(fs::path(root) / "include");
    }
  }
  candidates.push_back("/usr/local/cuda/include");
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(nvrtc.nvrtcVersion), &info) != 0 && info.dli_fname) {
    const fs::path library_dir = fs::weakly_canonical(info.dli_fname).parent_path();
    candidates.push_back(library_dir.parent_path() / "include");
    candidates.push_back(library_dir.parent_path().parent_path() / "include");
  }
  return candidates;
}

// CUDA_VERSION from cuda.h in the include folder, else the hash of cuda_fp16.h: either way a
// change of headers changes the store key.
std::string read_headers_version(const fs::path& include_dir) {
  const std::string cuda_h = read_text(include_dir / "cuda.h");
  std::smatch match;
  static const std::regex kVersion(R"(#define\s+CUDA_VERSION\s+(\d+))");
  if (std::regex_search(cuda_h, match, kVersion)) return "CUDA_VERSION " + match[1].str();
  return "cuda_fp16.h " + sha256_hex(read_text(include_dir / "cuda_fp16.h"));
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string text;
  for (const std::string& part : parts) text += (text.empty() ? "" : separator) + part;
  return text;
}

// Releases the NVRTC program whatever way compile() leaves.
struct ProgramGuard {
  const NvrtcLibrary& nvrtc;
  nvrtcProgram program = nullptr;
  ~ProgramGuard() {
    if (program != nullptr) nvrtc.nvrtcDestroyProgram(&program);
  }
};

}  // namespace

Result<std::unique_ptr<Compiler>> NvrtcCompiler::open() {
  auto nvrtc = open_nvrtc();
  if (!nvrtc) return nvrtc.error();
  std::unique_ptr<NvrtcCompiler> compiler(new NvrtcCompiler());
  compiler->nvrtc_ = std::move(nvrtc.value());
  const NvrtcLibrary& library = *compiler->nvrtc_;
  if (library.nvrtcVersion(&compiler->major_, &compiler->minor_) != NVRTC_SUCCESS) {
    return Error(library.library.path() + ": nvrtcVersion failed");
  }
  int count = 0;
  library.nvrtcGetNumSupportedArchs(&count);
  compiler->archs_.resize(std::max(count, 0));
  if (count > 0) library.nvrtcGetSupportedArchs(compiler->archs_.data());

  std::string looked;
  for (const fs::path& candidate : include_candidates(library)) {
    looked += (looked.empty() ? "" : ", ") + candidate.string();
    if (fs::exists(candidate / "cuda_fp16.h")) {
      compiler->include_dir_ = candidate;
      break;
    }
  }
  if (compiler->include_dir_.empty()) {
    return Error("CUDA headers not found: no cuda_fp16.h in " + looked)
        .with_hint("NVRTC 13 has no built-in CUDA headers; set CUDA_HOME to the toolkit");
  }
  compiler->headers_version_ = read_headers_version(compiler->include_dir_);
  return std::unique_ptr<Compiler>(std::move(compiler));
}

std::string NvrtcCompiler::description() const {
  return "NVRTC " + std::to_string(major_) + "." + std::to_string(minor_);
}

std::string NvrtcCompiler::version_tag() const {
  return std::to_string(major_) + "-" + std::to_string(minor_);
}

// The one place NVRTC options are chosen. Facts behind them (docs/BENCHMARK.md):
// - NVRTC 13.0 has no built-in CUDA headers: cuda_fp16.h comes from the toolkit include folder
//   found at open (added in compile(), not here, so the key holds no machine-specific path).
// - Never --Ofast-compile: kernels built with it run 70x to 120x slower.
// - Kernels must not emit cp.async with an L2 cache-hint policy (createpolicy): the 13.0
//   toolchain miscompiles it for sm_90 (illegal instruction at run time).
// - -lineinfo keeps source lines for ncu and compute-sanitizer at no run-time cost.
std::vector<std::string> NvrtcCompiler::key_options(const CompileRequest& request) const {
  std::vector<std::string> options = {request.target.arch_option(), "-default-device",
                                      "--std=c++17", "-lineinfo"};
  options.insert(options.end(), request.extra_options.begin(), request.extra_options.end());
  return options;
}

Result<CompiledKernel> NvrtcCompiler::compile(const CompileRequest& request) const {
  const auto started = std::chrono::steady_clock::now();
  const std::string subject =
      request.family + "." + request.config + " (" + request.target.label() + ")";
  std::vector<std::string> options = key_options(request);
  options.push_back("--include-path=" + include_dir_.string());
  auto failure = [&](const std::string& problem, const std::string& log) {
    Error error(subject + ": " + problem);
    error.with("config", request.config).with("target", request.target.label());
    error.with("options", join(options, " "));
    error.with("name_expressions", join(request.name_expressions, "; "));
    if (!log.empty()) error.with("log", log);
    return Result<CompiledKernel>(error);
  };
  if (request.target.sm < 75) return failure("architectures below sm_75 are not supported", "");

  std::vector<const char*> header_texts, header_names;
  for (const SourceFile& header : request.source.headers) {
    header_texts.push_back(header.text.c_str());
    header_names.push_back(header.name.c_str());
  }
  ProgramGuard guard{*nvrtc_};
  nvrtcResult result = nvrtc_->nvrtcCreateProgram(
      &guard.program, request.source.main.text.c_str(), request.source.main.name.c_str(),
      static_cast<int>(header_texts.size()), header_texts.data(), header_names.data());
  if (result != NVRTC_SUCCESS) return failure(nvrtc_->describe(result, "nvrtcCreateProgram"), "");
  for (const std::string& expression : request.name_expressions) {
    result = nvrtc_->nvrtcAddNameExpression(guard.program, expression.c_str());
    if (result != NVRTC_SUCCESS)
      return failure(nvrtc_->describe(result, "nvrtcAddNameExpression"), "");
  }
  std::vector<const char*> option_pointers;
  for (const std::string& option : options) option_pointers.push_back(option.c_str());
  const nvrtcResult compiled = nvrtc_->nvrtcCompileProgram(
      guard.program, static_cast<int>(option_pointers.size()), option_pointers.data());

  CompiledKernel kernel;
  size_t log_size = 0;
  if (nvrtc_->nvrtcGetProgramLogSize(guard.program, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    kernel.log.resize(log_size);
    nvrtc_->nvrtcGetProgramLog(guard.program, kernel.log.data());
    kernel.log.resize(log_size - 1);  // NUL
  }
  if (compiled != NVRTC_SUCCESS) {
    return failure(nvrtc_->describe(compiled, "nvrtcCompileProgram"), kernel.log);
  }
  size_t binary_size = 0;
  result = request.target.ptx ? nvrtc_->nvrtcGetPTXSize(guard.program, &binary_size)
                              : nvrtc_->nvrtcGetCUBINSize(guard.program, &binary_size);
  if (result != NVRTC_SUCCESS)
    return failure(nvrtc_->describe(result, "nvrtcGetCUBINSize"), kernel.log);
  kernel.binary.resize(binary_size);
  result = request.target.ptx ? nvrtc_->nvrtcGetPTX(guard.program, kernel.binary.data())
                              : nvrtc_->nvrtcGetCUBIN(guard.program, kernel.binary.data());
  if (result != NVRTC_SUCCESS)
    return failure(nvrtc_->describe(result, "nvrtcGetCUBIN"), kernel.log);
  for (const std::string& expression : request.name_expressions) {
    const char* lowered = nullptr;
    result = nvrtc_->nvrtcGetLoweredName(guard.program, expression.c_str(), &lowered);
    if (result != NVRTC_SUCCESS || lowered == nullptr) {
      return failure(nvrtc_->describe(result, "nvrtcGetLoweredName") + " for " + expression,
                     kernel.log);
    }
    kernel.lowered_names.emplace_back(expression, lowered);
  }
  kernel.family = request.family;
  kernel.config = request.config;
  kernel.target = request.target;
  kernel.key = compile_key(request, *this);
  kernel.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return kernel;
}

}  // namespace q4jit
