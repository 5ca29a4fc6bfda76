// Opening the CUDA driver (driver_library.hpp). The order matters for the messages: the library,
// then cuGetProcAddress (dlsym), then cuInit (the stub library and "no device" show up there),
// then every other entry point.
#include "runtime/cuda/driver_library.hpp"

#include <cstdlib>

namespace q4jit {

namespace {

using GetProcAddress = CUresult (*)(const char*, void**, int, cuuint64_t,
                                    CUdriverProcAddressQueryResult*);

std::string code_text(CUresult result) {
  return std::to_string(static_cast<int>(result));
}

// Resolves one entry point at the headers' ABI version.
CUresult resolve(GetProcAddress get, const char* name, void** pointer) {
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
  const CUresult result = get(name, pointer, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &status);
  if (result == CUDA_SUCCESS && (status != CU_GET_PROC_ADDRESS_SUCCESS || *pointer == nullptr)) {
    return CUDA_ERROR_NOT_FOUND;
  }
  return result;
}

Error init_failure(const DriverLibrary& driver, CUresult result) {
  const std::string path = driver.library.path();
  if (result == CUDA_ERROR_STUB_LIBRARY) {
    return Error("no GPU: " + path +
                 " is the CUDA toolkit's stub library, not a driver (cuInit returned 34, "
                 "CUDA_ERROR_STUB_LIBRARY)")
        .with_hint("install the NVIDIA driver, or take the stubs folder out of the library path");
  }
  if (result == CUDA_ERROR_NO_DEVICE) {
    return Error(
        "no GPU: the NVIDIA driver found no CUDA device (cuInit returned 100, "
        "CUDA_ERROR_NO_DEVICE)");
  }
  return Error("no GPU: " + driver.describe(result, "cuInit"));
}

}  // namespace

std::string DriverLibrary::describe(CUresult result, const char* call) const {
  const char* name = nullptr;
  const char* text = nullptr;
  if (cuGetErrorName == nullptr || cuGetErrorName(result, &name) != CUDA_SUCCESS) name = nullptr;
  if (cuGetErrorString == nullptr || cuGetErrorString(result, &text) != CUDA_SUCCESS)
    text = nullptr;
  return std::string(call) + ": " + (name ? name : "CUresult " + code_text(result)) + " (" +
         (text ? text : "no description") + ")";
}

Result<std::unique_ptr<DriverLibrary>> open_driver() {
  const char* override_path = std::getenv("Q4JIT_LIBCUDA");
  const std::string candidate = override_path && *override_path ? override_path : "libcuda.so.1";
  auto driver = std::make_unique<DriverLibrary>();
  std::string tried;
  driver->library = DynamicLibrary::open_first({candidate}, tried);
  if (!driver->library) {
    return Error("no GPU: the NVIDIA driver library " + candidate + " was not found (" + tried +
                 ")");
  }
  const std::string path = driver->library.path();
  auto get = reinterpret_cast<GetProcAddress>(driver->library.symbol("cuGetProcAddress_v2"));
  if (get == nullptr) {
    return Error("no GPU: " + path +
                 " has no cuGetProcAddress_v2: the driver is older than CUDA 12")
        .with_hint("update the NVIDIA driver");
  }
  for (auto [name, pointer] :
       {std::pair{"cuGetErrorString", reinterpret_cast<void**>(&driver->cuGetErrorString)},
        std::pair{"cuGetErrorName", reinterpret_cast<void**>(&driver->cuGetErrorName)}}) {
    resolve(get, name, pointer);  // best effort: only improves messages
  }
  const CUresult init_resolved = resolve(get, "cuInit", reinterpret_cast<void**>(&driver->cuInit));
  if (init_resolved != CUDA_SUCCESS) return init_failure(*driver, init_resolved);
  const CUresult initialized = driver->cuInit(0);
  if (initialized != CUDA_SUCCESS) return init_failure(*driver, initialized);

  std::string missing;
#define Q4JIT_DRIVER_SYMBOL(name)                                                   \
  if (resolve(get, #name, reinterpret_cast<void**>(&driver->name)) != CUDA_SUCCESS) \
    missing += (missing.empty() ? "" : ", ") + std::string(#name);
#include "runtime/cuda/driver_symbols.def"
#undef Q4JIT_DRIVER_SYMBOL
  if (!missing.empty()) {
    return Error("no GPU: " + path + " lacks driver entry points for CUDA " +
                 std::to_string(CUDA_VERSION) + ": " + missing)
        .with_hint("update the NVIDIA driver");
  }
  return driver;
}

}  // namespace q4jit
