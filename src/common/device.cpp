#include "msam/common/device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#if MSAM_CUDA_MEMORY_STATS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace msam::device {

void synchronize(const c10::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.has_index() ? d.index() : -1);
}

void reset_peak_memory(const c10::Device& d) {
#if MSAM_CUDA_MEMORY_STATS
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.has_index() ? d.index() : 0);
#else
  (void)d;
#endif
}

int64_t peak_memory_bytes(const c10::Device& d) {
#if MSAM_CUDA_MEMORY_STATS
  if (d.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(d.has_index() ? d.index() : 0);
    return stats.allocated_bytes[0].peak;  // [0]: the aggregate over both pools
  }
#else
  (void)d;
#endif
  return -1;
}

int64_t reserved_memory_bytes(const c10::Device& d) {
#if MSAM_CUDA_MEMORY_STATS
  if (d.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(d.has_index() ? d.index() : 0);
    return stats.reserved_bytes[0].current;
  }
#else
  (void)d;
#endif
  return -1;
}

void release_cached_memory(const c10::Device& d) {
#if MSAM_CUDA_MEMORY_STATS
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)d;
#endif
}

void set_tf32(bool enabled) {
  at::globalContext().setAllowTF32CuBLAS(enabled);
  at::globalContext().setAllowTF32CuDNN(enabled);
}

}  // namespace msam::device
