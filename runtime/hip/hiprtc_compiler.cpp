// hiprtc compiles (hiprtc_compiler.hpp): the options builder, the architecture check, compile and
// extract. Mirrors runtime/cuda/nvrtc_compiler.cpp.
#include "runtime/hip/hiprtc_compiler.hpp"

#include <chrono>

#include "runtime/compile_key.hpp"
#include "runtime/hip/hip_archs.hpp"

namespace q4jit {

namespace {

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string text;
  for (const std::string& part : parts) text += (text.empty() ? "" : separator) + part;
  return text;
}

// Releases the hiprtc program whatever way compile() leaves.
struct ProgramGuard {
  const HiprtcLibrary& hiprtc;
  hiprtcProgram program = nullptr;
  ~ProgramGuard() {
    if (program != nullptr) hiprtc.hiprtcDestroyProgram(&program);
  }
};

}  // namespace

Result<std::unique_ptr<Compiler>> HiprtcCompiler::open() {
  auto hip = open_hip_runtime();
  if (!hip) return hip.error();
  auto hiprtc = open_hiprtc(*hip.value());
  if (!hiprtc) return hiprtc.error();
  std::unique_ptr<HiprtcCompiler> compiler(new HiprtcCompiler());
  compiler->hip_ = std::move(hip.value());
  compiler->hiprtc_ = std::move(hiprtc.value());
  return std::unique_ptr<Compiler>(std::move(compiler));
}

std::string HiprtcCompiler::description() const {
  return "hiprtc (HIP " + hip_->version_text() + ")";
}

std::string HiprtcCompiler::version_tag() const {
  return "hip" + std::to_string(hip_->major()) + "-" + std::to_string(hip_->minor());
}

std::string HiprtcCompiler::headers_version() const {
  return "HIP_VERSION " + std::to_string(hip_->version);
}

std::string HiprtcCompiler::headers_dir() const {
  return hiprtc_->path + " (built-in headers)";
}

// The one place hiprtc options are chosen:
// - --offload-arch only for architectures in hip_archs.hpp: hiprtc 5.2 aborts the process on
//   gfx940/gfx942/gfx11xx instead of returning an error.
// - Q4JIT_WAVE_SIZE: the wavefront width the host assumes for the architecture; portable.cuh
//   checks it against the compiler's __AMDGCN_WAVEFRONT_SIZE.
// - No include path and no -D__HIP_PLATFORM_AMD__: hiprtc brings its own HIP headers and half
//   types, and the kernels include nothing of HIP's (hip/hip_fp16.h would clash with them).
std::vector<std::string> HiprtcCompiler::key_options(const CompileRequest& request) const {
  if (!request.target.amd()) {
    throw Error(request.family + "." + request.config + " (" + request.target.label() +
                "): hiprtc compiles AMD targets (gfx...), not NVIDIA ones");
  }
  const HipArch arch = find_hip_arch(request.target.gfx, hip_->major(), hip_->version_text());
  std::vector<std::string> options = {request.target.arch_option(), "-std=c++17", "-O3",
                                      "-DQ4JIT_WAVE_SIZE=" + std::to_string(arch.wave_size)};
  options.insert(options.end(), request.extra_options.begin(), request.extra_options.end());
  return options;
}

Result<CompiledKernel> HiprtcCompiler::compile(const CompileRequest& request) const {
  const auto started = std::chrono::steady_clock::now();
  const std::string subject =
      request.family + "." + request.config + " (" + request.target.label() + ")";
  std::vector<std::string> options;
  try {
    options = key_options(request);
  } catch (const Error& refused) {
    return refused;
  }
  auto failure = [&](const std::string& problem, const std::string& log) {
    Error error(subject + ": " + problem);
    error.with("config", request.config).with("target", request.target.label());
    error.with("options", join(options, " "));
    error.with("name_expressions", join(request.name_expressions, "; "));
    if (!log.empty()) error.with("log", log);
    return Result<CompiledKernel>(error);
  };

  std::vector<const char*> header_texts, header_names;
  for (const SourceFile& header : request.source.headers) {
    header_texts.push_back(header.text.c_str());
    header_names.push_back(header.name.c_str());
  }
  const std::lock_guard<std::mutex> one_at_a_time(compile_mutex_);
  ProgramGuard guard{*hiprtc_};
  hiprtcResult result = hiprtc_->hiprtcCreateProgram(
      &guard.program, request.source.main.text.c_str(), request.source.main.name.c_str(),
      static_cast<int>(header_texts.size()), header_texts.data(), header_names.data());
  if (result != HIPRTC_SUCCESS) {
    return failure(hiprtc_->describe(result, "hiprtcCreateProgram"), "");
  }
  for (const std::string& expression : request.name_expressions) {
    result = hiprtc_->hiprtcAddNameExpression(guard.program, expression.c_str());
    if (result != HIPRTC_SUCCESS)
      return failure(hiprtc_->describe(result, "hiprtcAddNameExpression"), "");
  }
  std::vector<const char*> option_pointers;
  for (const std::string& option : options) option_pointers.push_back(option.c_str());
  const hiprtcResult compiled = hiprtc_->hiprtcCompileProgram(
      guard.program, static_cast<int>(option_pointers.size()), option_pointers.data());

  CompiledKernel kernel;
  size_t log_size = 0;
  if (hiprtc_->hiprtcGetProgramLogSize(guard.program, &log_size) == HIPRTC_SUCCESS &&
      log_size > 0) {
    kernel.log.resize(log_size);
    hiprtc_->hiprtcGetProgramLog(guard.program, kernel.log.data());
    while (!kernel.log.empty() && (kernel.log.back() == '\0' || kernel.log.back() == '\n'))
      kernel.log.pop_back();
  }
  if (compiled != HIPRTC_SUCCESS) {
    return failure(hiprtc_->describe(compiled, "hiprtcCompileProgram"), kernel.log);
  }
  size_t code_size = 0;
  result = hiprtc_->hiprtcGetCodeSize(guard.program, &code_size);
  if (result != HIPRTC_SUCCESS)
    return failure(hiprtc_->describe(result, "hiprtcGetCodeSize"), kernel.log);
  if (code_size == 0) return failure("hiprtc returned an empty code object", kernel.log);
  kernel.binary.resize(code_size);
  result = hiprtc_->hiprtcGetCode(guard.program, kernel.binary.data());
  if (result != HIPRTC_SUCCESS)
    return failure(hiprtc_->describe(result, "hiprtcGetCode"), kernel.log);
  for (const std::string& expression : request.name_expressions) {
    const char* lowered = nullptr;
    result = hiprtc_->hiprtcGetLoweredName(guard.program, expression.c_str(), &lowered);
    if (result != HIPRTC_SUCCESS || lowered == nullptr) {
      return failure(hiprtc_->describe(result, "hiprtcGetLoweredName") + " for " + expression,
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
