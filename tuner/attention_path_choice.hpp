// Reading the attention decisions of one model geometry from the tuning database into the
// AttentionChoice that GpuOps runs (attention_path.hpp: families "attention_path" for prefill,
// "attention_split" for decode). The reader next to MatmulChooser: with no database, a read-only
// one, nothing stored for this device, geometry or kernel sources, or a stored row that names no
// configuration GpuOps has (a hand-edited or foreign row), the bucket is left out and GpuOps
// keeps today's rule there.
// Not here: deciding (attention_path_tuner.hpp), launching (model/gpu/gpu_ops.hpp).
#pragma once

#include "cache/tuning_db.hpp"
#include "runtime/device_info.hpp"
#include "tuner/attention_path.hpp"

namespace q4jit {

// Every stored decision of `geometry` on this device, prefill buckets from kPrefillMinBucket and
// decode buckets from kDecodeMinBucket, up to geometry.max_positions.
AttentionChoice load_attention_choice(const TuningDb* db, const DeviceFingerprint& fingerprint,
                                      const DeviceInfo& device, const AttentionGeometry& geometry);

}  // namespace q4jit
