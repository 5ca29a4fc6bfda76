// HipBackend (hip_backend.hpp): each method is one or a few HIP calls through Q4JIT_HIP, so a
// failure names the call and hipGetErrorString's text. Mirrors runtime/cuda/cuda_backend.cpp.
#include "runtime/hip/hip_backend.hpp"

#include <cstdio>

namespace q4jit {

namespace {

hipStream_t as_stream(uint64_t raw) {
  return reinterpret_cast<hipStream_t>(raw);
}
hipEvent_t as_event(uint64_t raw) {
  return reinterpret_cast<hipEvent_t>(raw);
}
hipFunction_t as_function(uint64_t raw) {
  return reinterpret_cast<hipFunction_t>(raw);
}
hipDeviceptr_t as_pointer(uint64_t raw) {
  return reinterpret_cast<hipDeviceptr_t>(raw);
}
template <typename Handle>
uint64_t as_raw(Handle handle) {
  return reinterpret_cast<uint64_t>(handle);
}

std::string format_uuid(const hipUUID& uuid) {
  std::string text = "GPU-";
  char digits[3];
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    std::snprintf(digits, sizeof digits, "%02x", static_cast<unsigned char>(uuid.bytes[i]));
    text += digits;
  }
  return text;
}

}  // namespace

HipBackend::HipBackend(std::unique_ptr<HipLibrary> hip) : hip_(std::move(hip)) {}

int HipBackend::device_count() const {
  int count = 0;
  Q4JIT_HIP(*hip_, hipGetDeviceCount, &count);
  return count;
}

// AMD has no compute capability: cc_major and cc_minor stay 0 so that NVIDIA target selection
// refuses the device instead of mistaking gfx90a (major 9, minor 0) for sm_90.
DeviceInfo HipBackend::device_info(int ordinal) const {
  hipDeviceProp_t properties{};
  Q4JIT_HIP(*hip_, get_device_properties, &properties, ordinal);
  DeviceInfo info;
  info.ordinal = ordinal;
  info.name = properties.name;
  info.arch_name = properties.gcnArchName;
  hipUUID uuid{};
  if (hip_->hipDeviceGetUuid(&uuid, ordinal) == hipSuccess) info.uuid = format_uuid(uuid);
  info.warp_size = properties.warpSize;
  info.sm_count = properties.multiProcessorCount;
  info.max_threads_per_block = properties.maxThreadsPerBlock;
  info.smem_per_block = static_cast<int64_t>(properties.sharedMemPerBlock);
  info.smem_per_block_optin = info.smem_per_block;  // no opt-in above the LDS size on AMD
  info.smem_per_sm = static_cast<int64_t>(properties.maxSharedMemoryPerMultiProcessor);
  info.l2_bytes = properties.l2CacheSize;
  info.global_memory_bytes = static_cast<int64_t>(properties.totalGlobalMem);
  info.memory_clock_khz = properties.memoryClockRate;
  info.memory_bus_width_bits = properties.memoryBusWidth;
  Q4JIT_HIP(*hip_, hipDriverGetVersion, &info.driver_version);
  return info;
}

void HipBackend::select_device(int ordinal) {
  Q4JIT_HIP(*hip_, hipSetDevice, ordinal);
  if (selected_ != ordinal) {
    current_ = device_info(ordinal);
    selected_ = ordinal;
  }
}

const DeviceInfo& HipBackend::current_device() const {
  if (selected_ < 0) throw Error("hip backend: no device selected (call select_device)");
  return current_;
}

DeviceBuffer HipBackend::allocate(size_t bytes) {
  void* pointer = nullptr;
  Q4JIT_HIP(*hip_, hipMalloc, &pointer, bytes);
  return DeviceBuffer(this, as_raw(pointer), bytes);
}

HostBuffer HipBackend::allocate_host(size_t bytes) {
  void* pointer = nullptr;
  Q4JIT_HIP(*hip_, hipHostMalloc, &pointer, bytes, 0u);
  return HostBuffer(this, as_raw(pointer), bytes);
}

void HipBackend::copy_to_device(uint64_t device, const void* host, size_t bytes,
                                StreamView stream) {
  // hipMemcpyHtoDAsync takes a non-const source it does not write.
  Q4JIT_HIP(*hip_, hipMemcpyHtoDAsync, as_pointer(device), const_cast<void*>(host), bytes,
            as_stream(stream.raw));
}

void HipBackend::copy_to_host(void* host, uint64_t device, size_t bytes, StreamView stream) {
  Q4JIT_HIP(*hip_, hipMemcpyDtoHAsync, host, as_pointer(device), bytes, as_stream(stream.raw));
}

void HipBackend::copy_on_device(uint64_t to, uint64_t from, size_t bytes, StreamView stream) {
  Q4JIT_HIP(*hip_, hipMemcpyDtoDAsync, as_pointer(to), as_pointer(from), bytes,
            as_stream(stream.raw));
}

void HipBackend::memset(uint64_t device, uint8_t value, size_t bytes, StreamView stream) {
  Q4JIT_HIP(*hip_, hipMemsetD8Async, as_pointer(device), value, bytes, as_stream(stream.raw));
}

void HipBackend::copy_peer(uint64_t to, int to_device, uint64_t from, int from_device, size_t bytes,
                           StreamView stream) {
  Q4JIT_HIP(*hip_, hipMemcpyPeerAsync, as_pointer(to), to_device, as_pointer(from), from_device,
            bytes, as_stream(stream.raw));
}

Stream HipBackend::create_stream() {
  hipStream_t stream = nullptr;
  Q4JIT_HIP(*hip_, hipStreamCreateWithFlags, &stream, hipStreamNonBlocking);
  return Stream(this, as_raw(stream));
}

void HipBackend::synchronize(StreamView stream) {
  Q4JIT_HIP(*hip_, hipStreamSynchronize, as_stream(stream.raw));
}

void HipBackend::synchronize_event(const Event& event) {
  Q4JIT_HIP(*hip_, hipEventSynchronize, as_event(event.raw()));
}

Event HipBackend::create_event() {
  hipEvent_t event = nullptr;
  Q4JIT_HIP(*hip_, hipEventCreate, &event);
  return Event(this, as_raw(event));
}

void HipBackend::record(const Event& event, StreamView stream) {
  Q4JIT_HIP(*hip_, hipEventRecord, as_event(event.raw()), as_stream(stream.raw));
}

void HipBackend::wait(const Event& event, StreamView stream) {
  Q4JIT_HIP(*hip_, hipStreamWaitEvent, as_stream(stream.raw), as_event(event.raw()), 0);
}

float HipBackend::elapsed_ms(const Event& start, const Event& end) {
  Q4JIT_HIP(*hip_, hipEventSynchronize, as_event(end.raw()));
  float milliseconds = 0;
  Q4JIT_HIP(*hip_, hipEventElapsedTime, &milliseconds, as_event(start.raw()), as_event(end.raw()));
  return milliseconds;
}

void HipBackend::begin_capture(const Stream& stream) {
  Q4JIT_HIP(*hip_, hipStreamBeginCapture, as_stream(stream.raw()), hipStreamCaptureModeThreadLocal);
}

GraphExec HipBackend::end_capture(const Stream& stream) {
  hipGraph_t graph = nullptr;
  Q4JIT_HIP(*hip_, hipStreamEndCapture, as_stream(stream.raw()), &graph);
  hipGraphExec_t exec = nullptr;
  const hipError_t instantiated = hip_->hipGraphInstantiateWithFlags(&exec, graph, 0);
  (void)hip_->hipGraphDestroy(graph);
  if (instantiated != hipSuccess) {
    throw Error(hip_->describe(instantiated, "hipGraphInstantiateWithFlags"));
  }
  return GraphExec(this, as_raw(exec));
}

void HipBackend::launch_graph(const GraphExec& graph, StreamView stream) {
  Q4JIT_HIP(*hip_, hipGraphLaunch, reinterpret_cast<hipGraphExec_t>(graph.raw()),
            as_stream(stream.raw));
}

LoadedModule HipBackend::load_module(const CompiledKernel& kernel) {
  if (!kernel.target.amd()) {
    throw Error(kernel.family + "." + kernel.config + ": a " + kernel.target.label() +
                " binary cannot load on an AMD GPU (compile for its gfx target)");
  }
  hipModule_t module = nullptr;
  Q4JIT_HIP(*hip_, hipModuleLoadData, &module, kernel.binary.data());
  LoadedModule loaded;
  loaded.module = ModuleHandle(this, as_raw(module));
  for (const auto& [expression, lowered] : kernel.lowered_names) {
    hipFunction_t function = nullptr;
    Q4JIT_HIP(*hip_, hipModuleGetFunction, &function, module, lowered.c_str());
    loaded.functions.emplace_back(expression, Function{as_raw(function), lowered});
  }
  return loaded;
}

FunctionAttributes HipBackend::attributes(const Function& function) {
  auto attribute = [&](hipFunction_attribute which) {
    int value = 0;
    Q4JIT_HIP(*hip_, hipFuncGetAttribute, &value, which, as_function(function.raw));
    return value;
  };
  FunctionAttributes attributes;
  attributes.registers = attribute(HIP_FUNC_ATTRIBUTE_NUM_REGS);
  attributes.local_bytes = attribute(HIP_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES);
  attributes.static_smem_bytes = attribute(HIP_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES);
  attributes.max_threads_per_block = attribute(HIP_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  return attributes;
}

// AMD has no opt-in for more shared memory (LDS): the per-block size is the limit.
void HipBackend::check_dynamic_smem(const Function& function, int64_t bytes) const {
  const int64_t limit = current_device().smem_per_block;
  if (bytes > limit) {
    throw Error(function.lowered_name + ": " + std::to_string(bytes) +
                " bytes of dynamic shared memory requested, the device allows " +
                std::to_string(limit));
  }
}

int HipBackend::max_active_blocks_per_sm(const Function& function, int block_threads,
                                         int64_t dynamic_smem_bytes) {
  check_dynamic_smem(function, dynamic_smem_bytes);
  int blocks = 0;
  Q4JIT_HIP(*hip_, hipModuleOccupancyMaxActiveBlocksPerMultiprocessor, &blocks,
            as_function(function.raw), block_threads, static_cast<size_t>(dynamic_smem_bytes));
  return blocks;
}

void HipBackend::launch(const Function& function, const LaunchGeometry& geometry, void** args,
                        StreamView stream) {
  check_dynamic_smem(function, geometry.dynamic_smem_bytes);
  Q4JIT_HIP(*hip_, hipModuleLaunchKernel, as_function(function.raw), geometry.grid[0],
            geometry.grid[1], geometry.grid[2], geometry.block[0], geometry.block[1],
            geometry.block[2], static_cast<unsigned>(geometry.dynamic_smem_bytes),
            as_stream(stream.raw), args, nullptr);
}

// Failures are ignored: release runs from destructors, and nothing can be done about them there.
void HipBackend::release(ResourceKind kind, uint64_t raw) noexcept {
  switch (kind) {
    case ResourceKind::buffer:
      (void)hip_->hipFree(as_pointer(raw));
      break;
    case ResourceKind::host_buffer:
      (void)hip_->hipHostFree(as_pointer(raw));
      break;
    case ResourceKind::stream:
      (void)hip_->hipStreamDestroy(as_stream(raw));
      break;
    case ResourceKind::event:
      (void)hip_->hipEventDestroy(as_event(raw));
      break;
    case ResourceKind::graph_exec:
      (void)hip_->hipGraphExecDestroy(reinterpret_cast<hipGraphExec_t>(raw));
      break;
    case ResourceKind::module:
      (void)hip_->hipModuleUnload(reinterpret_cast<hipModule_t>(raw));
      break;
  }
}

Result<std::unique_ptr<Backend>> open_hip_backend_with(std::unique_ptr<HipLibrary> hip) {
  const std::string path = hip->library.path();
  // Without an AMD GPU (or its kernel driver) HIP 5.2 fails hipInit with hipErrorInvalidDevice.
  const hipError_t initialized = hip->hipInit(0);
  if (initialized == hipErrorInvalidDevice || initialized == hipErrorNoDevice) {
    return Error("no GPU: the HIP runtime " + path + " found no AMD device (" +
                 hip->describe(initialized, "hipInit") + ")");
  }
  if (initialized != hipSuccess) return Error("no GPU: " + hip->describe(initialized, "hipInit"));
  int count = 0;
  const hipError_t counted = hip->hipGetDeviceCount(&count);
  if (counted != hipSuccess) {
    return Error("no GPU: " + hip->describe(counted, "hipGetDeviceCount") + " from " + path);
  }
  if (count == 0) return Error("no GPU: the HIP runtime " + path + " reports no AMD device");
  return std::unique_ptr<Backend>(std::make_unique<HipBackend>(std::move(hip)));
}

}  // namespace q4jit
