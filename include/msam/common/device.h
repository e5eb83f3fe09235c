// Device housekeeping that differs between CPU and CUDA builds: waiting for queued work (for
// timing), the CUDA caching allocator's memory counters, and the float32 math mode.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>

namespace msam::device {

// Waits until the work queued on a CUDA device is done; nothing on the CPU.
void synchronize(const c10::Device& d);

// Peak bytes held by tensors on a CUDA device since the last reset; -1 where unknown (CPU,
// or a build without the allocator's statistics).
void reset_peak_memory(const c10::Device& d);
int64_t peak_memory_bytes(const c10::Device& d);

// Bytes the CUDA caching allocator holds from the driver now (live tensors, cached free blocks,
// captured graphs' pools: what a graph's replays write to, which the peak above does not
// count); -1 where unknown.
int64_t reserved_memory_bytes(const c10::Device& d);
// Returns the caching allocator's free cached blocks to the driver (CUDA; nothing elsewhere).
void release_cached_memory(const c10::Device& d);

// TF32 for float32 matrix products and cuDNN convolutions on CUDA. LibTorch's defaults are
// off for matrix products and on for convolutions; reference parity checks turn both off.
void set_tf32(bool enabled);

}  // namespace msam::device
