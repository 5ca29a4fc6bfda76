// The CUDA implementation of Backend (runtime/backend.hpp) over the driver API opened by
// driver_library.hpp. Uses each device's primary context. Call it from the thread that selected
// the device (or call select_device on another thread first): the context is per thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "runtime/backend.hpp"
#include "runtime/cuda/driver_library.hpp"

namespace q4jit {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::unique_ptr<DriverLibrary> driver);
  ~CudaBackend() override;

  std::string platform() const override { return "cuda"; }
  int device_count() const override;
  DeviceInfo device_info(int ordinal) const override;
  void select_device(int ordinal) override;
  const DeviceInfo& current_device() const override;

  DeviceBuffer allocate(size_t bytes) override;
  HostBuffer allocate_host(size_t bytes) override;
  void copy_to_device(uint64_t device, const void* host, size_t bytes, StreamView stream) override;
  void copy_to_host(void* host, uint64_t device, size_t bytes, StreamView stream) override;
  void copy_on_device(uint64_t to, uint64_t from, size_t bytes, StreamView stream) override;
  void memset(uint64_t device, uint8_t value, size_t bytes, StreamView stream) override;
  void copy_peer(uint64_t to, int to_device, uint64_t from, int from_device, size_t bytes,
                 StreamView stream) override;

  Stream create_stream() override;
  void synchronize(StreamView stream) override;
  void synchronize_event(const Event& event) override;
  Event create_event() override;
  void record(const Event& event, StreamView stream) override;
  void wait(const Event& event, StreamView stream) override;
  float elapsed_ms(const Event& start, const Event& end) override;

  void begin_capture(const Stream& stream) override;
  GraphExec end_capture(const Stream& stream) override;
  void launch_graph(const GraphExec& graph, StreamView stream) override;

  LoadedModule load_module(const CompiledKernel& kernel) override;
  FunctionAttributes attributes(const Function& function) override;
  int max_active_blocks_per_sm(const Function& function, int block_threads,
                               int64_t dynamic_smem_bytes) override;
  void launch(const Function& function, const LaunchGeometry& geometry, void** args,
              StreamView stream) override;
  bool set_overlapped_launches(const Stream& stream, bool on) override;

  void release(ResourceKind kind, uint64_t raw) noexcept override;

 private:
  void allow_dynamic_smem(const Function& function, int64_t bytes);
  // The primary context of `ordinal`, retained on first use and released with the backend.
  CUcontext context_of(int ordinal);
  std::unique_ptr<DriverLibrary> driver_;
  int selected_ = -1;
  CUcontext context_ = nullptr;
  DeviceInfo current_;
  std::mutex overlapped_mutex_;
  std::set<uint64_t> overlapped_streams_;  // set_overlapped_launches; guarded by the mutex
  std::mutex peers_mutex_;
  std::map<int, CUcontext> peer_contexts_;  // copy_peer's devices; guarded by the mutex
};

}  // namespace q4jit
