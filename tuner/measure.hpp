// Timing kernels on a Backend the way ../shared/docs/BENCHMARK.md prescribes: a CUDA graph of many
// back-to-back calls rotating over copies of the weights (more than twice the L2 in all, so the
// weights come from HBM), warm-up first, then the median over many graph launches, measured with
// events. Also the device's HBM read ceiling, with a read-only streaming kernel of our own.
// Generic: any family's launches fit; the autotuner reuses it. Not here: validation, reporting.
#pragma once

#include <functional>

#include "runtime/backend.hpp"
#include "runtime/kernel_service.hpp"

namespace q4jit {

struct MeasureOptions {
  int warmup_launches = 2;       // graph launches before timing
  int timed_launches = 15;       // graph launches timed; the median is reported
  int min_calls_per_graph = 40;  // calls captured in one graph (at least two rounds of copies)
  // Launch overlapped (programmatic dependent launch, where the device has it), as the engine
  // does. Back to back, a q4 GEMV then prefetches its weights during the previous call's tail,
  // so per-call times read lower than inside the engine, but the winners picked this way ran
  // the H100's 7B decode step faster (2,700 us) than winners timed one call at a time (2,739).
  bool overlap_launches = true;
};

struct Timing {
  double median_us = 0;  // per call
  double min_us = 0;
  double max_us = 0;
  int calls = 0;  // calls timed in all
};

// Options sized for a call of about `call_us` microseconds: graphs of about 2 ms (at most 40
// calls; the rotation may ask for more), fewer timed launches for long calls. Keeps a
// repetition of a prefill-sized GEMM (a millisecond per call) near 30 ms instead of 0.4 s.
MeasureOptions measure_options_for(double call_us);
// The options of a quick first measurement whose only use is sizing the next (call_us).
MeasureOptions probe_measure_options();

// Copies of an operand set of `bytes_per_copy` needed so they exceed twice the L2 and 256 MB.
int copies_beyond_cache(const DeviceInfo& device, int64_t bytes_per_copy);

// Times enqueue(copy, stream): the call on copy `copy` of the operands (0 .. copies-1).
Timing time_calls(Backend& backend, int copies,
                  const std::function<void(int copy, StreamView stream)>& enqueue,
                  const MeasureOptions& options = {});

// The read-only streaming bandwidth of device memory in bytes per second (median of graphs
// reading a buffer of several L2 sizes with 128-bit non-caching loads).
double measure_read_ceiling(Backend& backend, KernelService& service);

}  // namespace q4jit
