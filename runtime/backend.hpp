// The interface between q4jit and a GPU platform: device info, memory, streams, events, graphs,
// module load, launch. No vendor type crosses it (handles are opaque integers), so the CUDA
// implementation (runtime/cuda/) and a later HIP one (runtime/hip/) sit side by side.
// Compiling source to a binary is the separate Compiler interface (runtime/compiler.hpp): it works
// without any GPU, which `q4jit kernels compile` and CI rely on.
// Every method throws q4jit::Error naming the platform call and its error text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/compile_types.hpp"
#include "runtime/device_info.hpp"

namespace q4jit {

class Backend;

enum class ResourceKind { buffer, host_buffer, stream, event, graph_exec, module };

// An owned platform handle, released through its backend when destroyed. Move-only.
template <ResourceKind kKind>
class Resource {
 public:
  Resource() = default;
  Resource(Backend* owner, uint64_t raw, size_t bytes = 0)
      : owner_(owner), raw_(raw), bytes_(bytes) {}
  ~Resource() { reset(); }
  Resource(Resource&& other) noexcept { *this = std::move(other); }
  Resource& operator=(Resource&& other) noexcept {
    if (this != &other) {
      reset();
      owner_ = std::exchange(other.owner_, nullptr);
      raw_ = std::exchange(other.raw_, 0);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;

  uint64_t raw() const { return raw_; }
  size_t bytes() const { return bytes_; }  // buffers only
  explicit operator bool() const { return owner_ != nullptr; }
  inline void reset() noexcept;

 private:
  Backend* owner_ = nullptr;
  uint64_t raw_ = 0;
  size_t bytes_ = 0;
};

using DeviceBuffer = Resource<ResourceKind::buffer>;     // raw() is the device address
using HostBuffer = Resource<ResourceKind::host_buffer>;  // raw() is the host address
using Stream = Resource<ResourceKind::stream>;
using Event = Resource<ResourceKind::event>;
using GraphExec = Resource<ResourceKind::graph_exec>;
using ModuleHandle = Resource<ResourceKind::module>;

// A stream argument: a Stream, or the default (legacy) stream when left out.
struct StreamView {
  StreamView() = default;
  StreamView(const Stream& stream) : raw(stream.raw()) {}
  uint64_t raw = 0;
};

// A kernel entry point inside a loaded module (not owned: it lives as long as the module).
struct Function {
  uint64_t raw = 0;
  std::string lowered_name;
};

struct FunctionAttributes {
  int registers = 0;        // per thread
  int64_t local_bytes = 0;  // per thread: spills and local arrays
  int64_t static_smem_bytes = 0;
  int max_threads_per_block = 0;
};

struct LaunchGeometry {
  std::array<unsigned, 3> grid = {1, 1, 1};
  std::array<unsigned, 3> block = {1, 1, 1};
  int64_t dynamic_smem_bytes = 0;  // past 48 KB the backend raises the function's limit
};

// A 2-D grid of 1-D blocks, the shape of most q4jit launches.
inline LaunchGeometry launch_geometry(unsigned grid_x, unsigned grid_y, unsigned block_x,
                                      int64_t dynamic_smem_bytes = 0) {
  LaunchGeometry geometry;
  geometry.grid = {grid_x, grid_y, 1};
  geometry.block = {block_x, 1, 1};
  geometry.dynamic_smem_bytes = dynamic_smem_bytes;
  return geometry;
}

// A module with its kernels looked up by name expression.
struct LoadedModule {
  ModuleHandle module;
  std::vector<std::pair<std::string, Function>> functions;  // name expression -> function
  // The function for a name expression given at compile time; Error listing the known ones.
  const Function& function(const std::string& name_expression) const;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // --- device info
  virtual std::string platform() const = 0;  // "cuda"
  virtual int device_count() const = 0;
  virtual DeviceInfo device_info(int ordinal) const = 0;
  // Makes `ordinal` current for the calling thread (CUDA: its primary context).
  virtual void select_device(int ordinal) = 0;
  virtual const DeviceInfo& current_device() const = 0;

  // --- memory (copies and memset are ordered on the stream; synchronize before reading host data)
  virtual DeviceBuffer allocate(size_t bytes) = 0;
  // Page-locked host memory. A copy between it and the device returns at once (a copy_to_host
  // into pageable memory returns only after the stream's earlier work), so the host can read a
  // result back while later work stays queued behind it.
  virtual HostBuffer allocate_host(size_t bytes) = 0;
  virtual void copy_to_device(uint64_t device, const void* host, size_t bytes,
                              StreamView stream) = 0;
  virtual void copy_to_host(void* host, uint64_t device, size_t bytes, StreamView stream) = 0;
  virtual void copy_on_device(uint64_t to, uint64_t from, size_t bytes, StreamView stream) = 0;
  virtual void memset(uint64_t device, uint8_t value, size_t bytes, StreamView stream) = 0;
  // Copies device `from_device`'s memory at `from` to device `to_device`'s at `to` (a model split
  // over GPUs hands its hidden state on), ordered on `stream`, a stream of either device (CUDA:
  // cuMemcpyPeerAsync; it goes through the host where the GPUs have no peer access).
  virtual void copy_peer(uint64_t to, int to_device, uint64_t from, int from_device, size_t bytes,
                         StreamView stream) = 0;

  // --- streams and events
  virtual Stream create_stream() = 0;
  virtual void synchronize(StreamView stream) = 0;
  // Blocks until the work before `event`'s last record has completed on the device.
  virtual void synchronize_event(const Event& event) = 0;
  virtual Event create_event() = 0;
  // Recorded while `stream` is being captured, the record becomes a node of the graph: each
  // replay then records it on the device (how a captured step is timed op by op).
  virtual void record(const Event& event, StreamView stream) = 0;
  // Work enqueued on `stream` after this call starts only once `event`'s last record has completed
  // on the device; the event may come from another stream, or from another device's backend.
  virtual void wait(const Event& event, StreamView stream) = 0;
  // Milliseconds between two recorded events; waits for `end`.
  virtual float elapsed_ms(const Event& start, const Event& end) = 0;

  // --- graphs: everything launched on `stream` between begin and end is captured, not run
  virtual void begin_capture(const Stream& stream) = 0;
  virtual GraphExec end_capture(const Stream& stream) = 0;  // instantiated, ready to launch
  virtual void launch_graph(const GraphExec& graph, StreamView stream) = 0;

  // --- modules and launch
  virtual LoadedModule load_module(const CompiledKernel& kernel) = 0;
  virtual FunctionAttributes attributes(const Function& function) = 0;
  // Blocks of `block_threads` threads that fit on one SM at once.
  virtual int max_active_blocks_per_sm(const Function& function, int block_threads,
                                       int64_t dynamic_smem_bytes) = 0;
  // args: one pointer per kernel parameter, to a value of the parameter's type.
  virtual void launch(const Function& function, const LaunchGeometry& geometry, void** args,
                      StreamView stream) = 0;
  // Programmatic dependent launch: kernels launched on `stream` may then start while the kernel
  // before them on it still runs, hiding launch gaps (kernel_sources/portable.cuh states the
  // invariant that makes this safe for q4jit's kernels; graphs captured from the stream keep it).
  // Returns whether it is on: only where the platform and device do it (CUDA, sm_90 and later).
  virtual bool set_overlapped_launches(const Stream& /*stream*/, bool /*on*/) { return false; }

  // (internal) Frees a handle; called by Resource, never throws.
  virtual void release(ResourceKind kind, uint64_t raw) noexcept = 0;
};

template <ResourceKind kKind>
void Resource<kKind>::reset() noexcept {
  if (owner_ != nullptr) owner_->release(kKind, raw_);
  owner_ = nullptr;
  raw_ = 0;
  bytes_ = 0;
}

// Launches with typed arguments (jitify's configure-then-launch, in one call).
template <typename... Args>
void launch_kernel(Backend& backend, const Function& function, const LaunchGeometry& geometry,
                   StreamView stream, Args... args) {
  static_assert((std::is_trivially_copyable_v<Args> && ...), "kernel arguments are copied bytes");
  void* pointers[] = {static_cast<void*>(&args)..., nullptr};
  backend.launch(function, geometry, pointers, stream);
}

}  // namespace q4jit
