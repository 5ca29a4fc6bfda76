// CudaBackend (cuda_backend.hpp): each method is one or a few driver calls through Q4JIT_CU, so a
// failure names the call and cuGetErrorString's text.
#include "runtime/cuda/cuda_backend.hpp"

#include <cstdio>

namespace q4jit {

namespace {

CUstream as_stream(uint64_t raw) {
  return reinterpret_cast<CUstream>(raw);
}
CUevent as_event(uint64_t raw) {
  return reinterpret_cast<CUevent>(raw);
}
CUfunction as_function(uint64_t raw) {
  return reinterpret_cast<CUfunction>(raw);
}
template <typename Handle>
uint64_t as_raw(Handle handle) {
  return reinterpret_cast<uint64_t>(handle);
}

constexpr int64_t kDefaultSmemLimit = 48 * 1024;

std::string format_uuid(const CUuuid& uuid) {
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

CudaBackend::CudaBackend(std::unique_ptr<DriverLibrary> driver) : driver_(std::move(driver)) {}

CudaBackend::~CudaBackend() {
  for (const auto& [ordinal, context] : peer_contexts_) {
    CUdevice device = 0;
    if (driver_->cuDeviceGet(&device, ordinal) == CUDA_SUCCESS) {
      driver_->cuDevicePrimaryCtxRelease(device);
    }
  }
  if (selected_ >= 0) {
    CUdevice device = 0;
    if (driver_->cuDeviceGet(&device, selected_) == CUDA_SUCCESS) {
      driver_->cuDevicePrimaryCtxRelease(device);
    }
  }
}

int CudaBackend::device_count() const {
  int count = 0;
  Q4JIT_CU(*driver_, cuDeviceGetCount, &count);
  return count;
}

DeviceInfo CudaBackend::device_info(int ordinal) const {
  CUdevice device = 0;
  Q4JIT_CU(*driver_, cuDeviceGet, &device, ordinal);
  DeviceInfo info;
  info.ordinal = ordinal;
  char name[256] = {};
  Q4JIT_CU(*driver_, cuDeviceGetName, name, static_cast<int>(sizeof name - 1), device);
  info.name = name;
  CUuuid uuid{};
  Q4JIT_CU(*driver_, cuDeviceGetUuid, &uuid, device);
  info.uuid = format_uuid(uuid);
  auto attribute = [&](CUdevice_attribute which) {
    int value = 0;
    Q4JIT_CU(*driver_, cuDeviceGetAttribute, &value, which, device);
    return value;
  };
  info.cc_major = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  info.cc_minor = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  info.sm_count = attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  info.max_threads_per_block = attribute(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  info.smem_per_block = attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK);
  info.smem_per_block_optin = attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  info.smem_per_sm = attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
  info.l2_bytes = attribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
  info.memory_clock_khz = attribute(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
  info.memory_bus_width_bits = attribute(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
  size_t total = 0;
  Q4JIT_CU(*driver_, cuDeviceTotalMem, &total, device);
  info.global_memory_bytes = static_cast<int64_t>(total);
  Q4JIT_CU(*driver_, cuDriverGetVersion, &info.driver_version);
  return info;
}

void CudaBackend::select_device(int ordinal) {
  CUdevice device = 0;
  Q4JIT_CU(*driver_, cuDeviceGet, &device, ordinal);
  if (selected_ != ordinal) {
    CUcontext context = nullptr;
    Q4JIT_CU(*driver_, cuDevicePrimaryCtxRetain, &context, device);
    if (selected_ >= 0) {
      CUdevice previous = 0;
      if (driver_->cuDeviceGet(&previous, selected_) == CUDA_SUCCESS) {
        driver_->cuDevicePrimaryCtxRelease(previous);
      }
    }
    context_ = context;
    selected_ = ordinal;
    current_ = device_info(ordinal);
  }
  Q4JIT_CU(*driver_, cuCtxSetCurrent, context_);
}

const DeviceInfo& CudaBackend::current_device() const {
  if (selected_ < 0) throw Error("cuda backend: no device selected (call select_device)");
  return current_;
}

DeviceBuffer CudaBackend::allocate(size_t bytes) {
  CUdeviceptr pointer = 0;
  Q4JIT_CU(*driver_, cuMemAlloc, &pointer, bytes);
  return DeviceBuffer(this, pointer, bytes);
}

HostBuffer CudaBackend::allocate_host(size_t bytes) {
  void* pointer = nullptr;
  Q4JIT_CU(*driver_, cuMemAllocHost, &pointer, bytes);
  return HostBuffer(this, reinterpret_cast<uint64_t>(pointer), bytes);
}

void CudaBackend::copy_to_device(uint64_t device, const void* host, size_t bytes,
                                 StreamView stream) {
  Q4JIT_CU(*driver_, cuMemcpyHtoDAsync, device, host, bytes, as_stream(stream.raw));
}

void CudaBackend::copy_to_host(void* host, uint64_t device, size_t bytes, StreamView stream) {
  Q4JIT_CU(*driver_, cuMemcpyDtoHAsync, host, device, bytes, as_stream(stream.raw));
}

void CudaBackend::copy_on_device(uint64_t to, uint64_t from, size_t bytes, StreamView stream) {
  Q4JIT_CU(*driver_, cuMemcpyDtoDAsync, to, from, bytes, as_stream(stream.raw));
}

void CudaBackend::memset(uint64_t device, uint8_t value, size_t bytes, StreamView stream) {
  Q4JIT_CU(*driver_, cuMemsetD8Async, device, value, bytes, as_stream(stream.raw));
}

CUcontext CudaBackend::context_of(int ordinal) {
  const std::lock_guard lock(peers_mutex_);
  if (auto found = peer_contexts_.find(ordinal); found != peer_contexts_.end())
    return found->second;
  CUdevice device = 0;
  Q4JIT_CU(*driver_, cuDeviceGet, &device, ordinal);
  CUcontext context = nullptr;
  Q4JIT_CU(*driver_, cuDevicePrimaryCtxRetain, &context, device);
  peer_contexts_.emplace(ordinal, context);
  return context;
}

void CudaBackend::copy_peer(uint64_t to, int to_device, uint64_t from, int from_device,
                            size_t bytes, StreamView stream) {
  Q4JIT_CU(*driver_, cuMemcpyPeerAsync, to, context_of(to_device), from, context_of(from_device),
           bytes, as_stream(stream.raw));
}

Stream CudaBackend::create_stream() {
  CUstream stream = nullptr;
  Q4JIT_CU(*driver_, cuStreamCreate, &stream, CU_STREAM_NON_BLOCKING);
  return Stream(this, as_raw(stream));
}

void CudaBackend::synchronize(StreamView stream) {
  Q4JIT_CU(*driver_, cuStreamSynchronize, as_stream(stream.raw));
}

void CudaBackend::synchronize_event(const Event& event) {
  Q4JIT_CU(*driver_, cuEventSynchronize, as_event(event.raw()));
}

Event CudaBackend::create_event() {
  CUevent event = nullptr;
  Q4JIT_CU(*driver_, cuEventCreate, &event, CU_EVENT_DEFAULT);
  return Event(this, as_raw(event));
}

void CudaBackend::record(const Event& event, StreamView stream) {
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  if (stream.raw != 0) Q4JIT_CU(*driver_, cuStreamIsCapturing, as_stream(stream.raw), &status);
  if (status == CU_STREAM_CAPTURE_STATUS_ACTIVE) {
    // A record node in the graph (a plain record while capturing only orders streams).
    Q4JIT_CU(*driver_, cuEventRecordWithFlags, as_event(event.raw()), as_stream(stream.raw),
             CU_EVENT_RECORD_EXTERNAL);
    return;
  }
  Q4JIT_CU(*driver_, cuEventRecord, as_event(event.raw()), as_stream(stream.raw));
}

void CudaBackend::wait(const Event& event, StreamView stream) {
  Q4JIT_CU(*driver_, cuStreamWaitEvent, as_stream(stream.raw), as_event(event.raw()), 0);
}

float CudaBackend::elapsed_ms(const Event& start, const Event& end) {
  Q4JIT_CU(*driver_, cuEventSynchronize, as_event(end.raw()));
  float milliseconds = 0;
  Q4JIT_CU(*driver_, cuEventElapsedTime, &milliseconds, as_event(start.raw()), as_event(end.raw()));
  return milliseconds;
}

void CudaBackend::begin_capture(const Stream& stream) {
  Q4JIT_CU(*driver_, cuStreamBeginCapture, as_stream(stream.raw()),
           CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
}

GraphExec CudaBackend::end_capture(const Stream& stream) {
  CUgraph graph = nullptr;
  Q4JIT_CU(*driver_, cuStreamEndCapture, as_stream(stream.raw()), &graph);
  CUgraphExec exec = nullptr;
  const CUresult instantiated = driver_->cuGraphInstantiateWithFlags(&exec, graph, 0);
  driver_->cuGraphDestroy(graph);
  if (instantiated != CUDA_SUCCESS) {
    throw Error(driver_->describe(instantiated, "cuGraphInstantiateWithFlags"));
  }
  return GraphExec(this, as_raw(exec));
}

void CudaBackend::launch_graph(const GraphExec& graph, StreamView stream) {
  Q4JIT_CU(*driver_, cuGraphLaunch, reinterpret_cast<CUgraphExec>(graph.raw()),
           as_stream(stream.raw));
}

LoadedModule CudaBackend::load_module(const CompiledKernel& kernel) {
  CUmodule module = nullptr;
  Q4JIT_CU(*driver_, cuModuleLoadData, &module, kernel.binary.c_str());
  LoadedModule loaded;
  loaded.module = ModuleHandle(this, as_raw(module));
  for (const auto& [expression, lowered] : kernel.lowered_names) {
    CUfunction function = nullptr;
    Q4JIT_CU(*driver_, cuModuleGetFunction, &function, module, lowered.c_str());
    loaded.functions.emplace_back(expression, Function{as_raw(function), lowered});
  }
  return loaded;
}

FunctionAttributes CudaBackend::attributes(const Function& function) {
  auto attribute = [&](CUfunction_attribute which) {
    int value = 0;
    Q4JIT_CU(*driver_, cuFuncGetAttribute, &value, which, as_function(function.raw));
    return value;
  };
  FunctionAttributes attributes;
  attributes.registers = attribute(CU_FUNC_ATTRIBUTE_NUM_REGS);
  attributes.local_bytes = attribute(CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES);
  attributes.static_smem_bytes = attribute(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES);
  attributes.max_threads_per_block = attribute(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
  return attributes;
}

void CudaBackend::allow_dynamic_smem(const Function& function, int64_t bytes) {
  if (bytes <= kDefaultSmemLimit) return;
  const int64_t limit = current_device().smem_per_block_optin;
  if (bytes > limit) {
    throw Error(function.lowered_name + ": " + std::to_string(bytes) +
                " bytes of dynamic shared memory requested, the device allows " +
                std::to_string(limit));
  }
  Q4JIT_CU(*driver_, cuFuncSetAttribute, as_function(function.raw),
           CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, static_cast<int>(bytes));
}

int CudaBackend::max_active_blocks_per_sm(const Function& function, int block_threads,
                                          int64_t dynamic_smem_bytes) {
  allow_dynamic_smem(function, dynamic_smem_bytes);
  int blocks = 0;
  Q4JIT_CU(*driver_, cuOccupancyMaxActiveBlocksPerMultiprocessor, &blocks,
           as_function(function.raw), block_threads, static_cast<size_t>(dynamic_smem_bytes));
  return blocks;
}

bool CudaBackend::set_overlapped_launches(const Stream& stream, bool on) {
  const std::lock_guard lock(overlapped_mutex_);
  if (on && current_device().sm() >= 90) {
    overlapped_streams_.insert(stream.raw());
    return true;
  }
  overlapped_streams_.erase(stream.raw());
  return false;
}

void CudaBackend::launch(const Function& function, const LaunchGeometry& geometry, void** args,
                         StreamView stream) {
  allow_dynamic_smem(function, geometry.dynamic_smem_bytes);
  bool overlapped = false;
  {
    const std::lock_guard lock(overlapped_mutex_);
    overlapped = overlapped_streams_.count(stream.raw) > 0;
  }
  if (overlapped) {
    CUlaunchAttribute attribute{};
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig config{};
    config.gridDimX = geometry.grid[0];
    config.gridDimY = geometry.grid[1];
    config.gridDimZ = geometry.grid[2];
    config.blockDimX = geometry.block[0];
    config.blockDimY = geometry.block[1];
    config.blockDimZ = geometry.block[2];
    config.sharedMemBytes = static_cast<unsigned>(geometry.dynamic_smem_bytes);
    config.hStream = as_stream(stream.raw);
    config.attrs = &attribute;
    config.numAttrs = 1;
    Q4JIT_CU(*driver_, cuLaunchKernelEx, &config, as_function(function.raw), args, nullptr);
    return;
  }
  Q4JIT_CU(*driver_, cuLaunchKernel, as_function(function.raw), geometry.grid[0], geometry.grid[1],
           geometry.grid[2], geometry.block[0], geometry.block[1], geometry.block[2],
           static_cast<unsigned>(geometry.dynamic_smem_bytes), as_stream(stream.raw), args,
           nullptr);
}

void CudaBackend::release(ResourceKind kind, uint64_t raw) noexcept {
  switch (kind) {
    case ResourceKind::buffer:
      driver_->cuMemFree(raw);
      break;
    case ResourceKind::host_buffer:
      driver_->cuMemFreeHost(reinterpret_cast<void*>(raw));
      break;
    case ResourceKind::stream: {
      const std::lock_guard lock(overlapped_mutex_);
      overlapped_streams_.erase(raw);
      driver_->cuStreamDestroy(as_stream(raw));
      break;
    }
    case ResourceKind::event:
      driver_->cuEventDestroy(as_event(raw));
      break;
    case ResourceKind::graph_exec:
      driver_->cuGraphExecDestroy(reinterpret_cast<CUgraphExec>(raw));
      break;
    case ResourceKind::module:
      driver_->cuModuleUnload(reinterpret_cast<CUmodule>(raw));
      break;
  }
}

}  // namespace q4jit
