// The HIP implementation of Backend (runtime/backend.hpp) over the HIP runtime API opened by
// hip_library.hpp, for AMD GPUs. Loads hiprtc code objects with hipModuleLoadData. The device is
// per thread (hipSetDevice): call select_device on each thread that uses it.
// Compile-checked only: no AMD GPU was available to run it (README, "AMD GPUs").
#pragma once

#include <memory>

#include "runtime/backend.hpp"
#include "runtime/hip/hip_library.hpp"

namespace q4jit {

class HipBackend final : public Backend {
 public:
  explicit HipBackend(std::unique_ptr<HipLibrary> hip);

  std::string platform() const override { return "hip"; }
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

  void release(ResourceKind kind, uint64_t raw) noexcept override;

 private:
  void check_dynamic_smem(const Function& function, int64_t bytes) const;
  std::unique_ptr<HipLibrary> hip_;
  int selected_ = -1;
  DeviceInfo current_;
};

// hipInit and at least one device, or why not ("no GPU: hipGetDeviceCount: hipErrorNoDevice
// (...)"): the HIP backend with no device selected.
Result<std::unique_ptr<Backend>> open_hip_backend_with(std::unique_ptr<HipLibrary> hip);

}  // namespace q4jit
