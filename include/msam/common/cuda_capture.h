// Capturing CUDA work into a graph, shared by inference (model/cuda_graphs.h) and training
// (train/step_graph.h). Defined only in builds with LibTorch's CUDA headers (MSAM_CUDA_GRAPHS);
// callers include at::cuda::CUDAGraph themselves.
#pragma once
#include <functional>

namespace at::cuda {
struct CUDAGraph;
}

namespace msam::cuda {

// Runs `warm_up` `warm_ups` times, then captures `body` into `graph`, all on a side stream
// ordered after the caller's queued work and before its later work. The warm-up lets cuDNN and
// cuBLAS choose algorithms and workspaces, and the autograd engine start its device threads,
// outside the capture. The autocast cast cache is off during capture: cached casts live outside
// the graph's memory pool and would dangle in it. A failure ends the capture and rethrows.
void capture(at::cuda::CUDAGraph& graph, int warm_ups, const std::function<void()>& warm_up,
             const std::function<void()>& body);

}  // namespace msam::cuda
