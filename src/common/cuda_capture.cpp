#include "msam/common/cuda_capture.h"

#if MSAM_CUDA_GRAPHS
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace msam::cuda {

void capture(at::cuda::CUDAGraph& graph, int warm_ups, const std::function<void()>& warm_up,
             const std::function<void()>& body) {
  const auto caller = c10::cuda::getCurrentCUDAStream();
  auto side = c10::cuda::getStreamFromPool();
  at::cuda::CUDAEvent ready;
  ready.record(caller);
  ready.block(side);
  {
    c10::cuda::CUDAStreamGuard guard(side);
    for (int i = 0; i < warm_ups; ++i) warm_up();
    const bool cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
    try {
      graph.capture_begin();
      body();
    } catch (...) {
      try {
        graph.capture_end();
      } catch (...) {
      }
      at::autocast::set_autocast_cache_enabled(cache);
      throw;
    }
    graph.capture_end();
    at::autocast::set_autocast_cache_enabled(cache);
  }
  at::cuda::CUDAEvent done;
  done.record(side);
  done.block(caller);
}

}  // namespace msam::cuda
#endif
