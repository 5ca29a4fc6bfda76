// Kernel timing and the HBM read ceiling (measure.hpp).
#include "tuner/measure.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace q4jit {

namespace {

Timing summarize(std::vector<double> per_call_us, int calls) {
  std::sort(per_call_us.begin(), per_call_us.end());
  Timing timing;
  timing.median_us = per_call_us[per_call_us.size() / 2];
  timing.min_us = per_call_us.front();
  timing.max_us = per_call_us.back();
  timing.calls = calls;
  return timing;
}

}  // namespace

MeasureOptions measure_options_for(double call_us) {
  MeasureOptions options;
  options.warmup_launches = 1;
  options.timed_launches = call_us > 200 ? 3 : 5;
  options.min_calls_per_graph = std::clamp(int(std::ceil(2000.0 / std::max(call_us, 1.0))), 1, 40);
  return options;
}

MeasureOptions probe_measure_options() {
  MeasureOptions options;
  options.warmup_launches = 0;
  options.timed_launches = 1;
  options.min_calls_per_graph = 1;
  return options;
}

int copies_beyond_cache(const DeviceInfo& device, int64_t bytes_per_copy) {
  const int64_t target = std::max<int64_t>(2 * device.l2_bytes, int64_t(256) << 20);
  return static_cast<int>(
      std::max<int64_t>(2, (target + bytes_per_copy - 1) / std::max<int64_t>(bytes_per_copy, 1)));
}

Timing time_calls(Backend& backend, int copies,
                  const std::function<void(int copy, StreamView stream)>& enqueue,
                  const MeasureOptions& options) {
  copies = std::max(copies, 1);
  const int calls = std::max(options.min_calls_per_graph, 2 * copies) / copies * copies;
  Stream stream = backend.create_stream();
  backend.set_overlapped_launches(stream, options.overlap_launches);
  // One direct round first: lazy module loading and first-touch costs stay out of the graph.
  for (int copy = 0; copy < copies; ++copy) enqueue(copy, stream);
  backend.synchronize(stream);
  backend.begin_capture(stream);
  for (int call = 0; call < calls; ++call) enqueue(call % copies, stream);
  GraphExec graph = backend.end_capture(stream);
  for (int i = 0; i < options.warmup_launches; ++i) backend.launch_graph(graph, stream);
  Event start = backend.create_event(), end = backend.create_event();
  std::vector<double> per_call_us;
  for (int i = 0; i < options.timed_launches; ++i) {
    backend.record(start, stream);
    backend.launch_graph(graph, stream);
    backend.record(end, stream);
    per_call_us.push_back(backend.elapsed_ms(start, end) * 1000.0 / calls);
  }
  backend.synchronize(stream);
  return summarize(per_call_us, calls * options.timed_launches);
}

double measure_read_ceiling(Backend& backend, KernelService& service) {
  const DeviceInfo& device = backend.current_device();
  CompileRequest request;
  request.family = "memory_read";
  request.config = "default";
  request.source = embedded_kernel_source("memory_read.cu");
  request.name_expressions = {"memory_read_kernel"};
  request.target = select_target(device.sm(), service.compiler().supported_archs());
  Result<CompiledKernel> compiled = service.get(request);
  const LoadedModule module = backend.load_module(compiled.value());
  const Function& function = module.function("memory_read_kernel");

  // One buffer of 8 L2 sizes (at least 512 MB), read whole per call.
  const int64_t bytes = std::max<int64_t>(8 * device.l2_bytes, int64_t(512) << 20) / 16 * 16;
  DeviceBuffer data = backend.allocate(static_cast<size_t>(bytes));
  DeviceBuffer sink = backend.allocate(16);
  backend.memset(data.raw(), 0x5a, static_cast<size_t>(bytes), {});
  LaunchGeometry grid;
  const int blocks_per_sm = std::max(1, backend.max_active_blocks_per_sm(function, 512, 0));
  grid.grid = {static_cast<unsigned>(device.sm_count * blocks_per_sm), 1, 1};
  grid.block = {512, 1, 1};
  const unsigned long long count = static_cast<unsigned long long>(bytes / 16);
  MeasureOptions options;
  options.min_calls_per_graph = 8;
  options.timed_launches = 9;
  const Timing timing = time_calls(
      backend, 1,
      [&](int, StreamView stream) {
        launch_kernel(backend, function, grid, stream, data.raw(), count, sink.raw());
      },
      options);
  return double(bytes) / (timing.median_us * 1e-6);
}

}  // namespace q4jit
