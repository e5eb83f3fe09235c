// CUDA graphs for inference: the image encoder and one click replayed from captured graphs.
//
// Why: at batch 1 a click is hundreds of small kernels, and on a GPU its cost is the CPU's
// time to launch them (measured on an H200: ~6 ms per click eagerly, for well under 1 ms of
// GPU work); a replay is one launch. MSAM::encode and MSAM::click use this cache once
// enabled (MSAM::set_cuda_graphs) for CUDA inputs in eval mode without autograd. One graph is
// captured per input signature (batch, number of clicks, dtypes, autocast state) and reused
// for every later volume: inputs are copied into the graph's static buffers, outputs cloned
// out of them. A graph reads the weights in place (reloading them by copy is seen) but fixes
// the module structure at capture (window path, merged LoRA). Built only against a CUDA
// LibTorch; elsewhere, and after a failed capture (reported once on stderr), every call runs
// eagerly.
#pragma once
#include <torch/types.h>

#include <memory>
#include <optional>

#include "msam/model/mask_decoder.h"

namespace msam::model {

class MSAMImpl;
struct VolumeContext;

class CudaGraphCache {
 public:
  // Whether this build can capture CUDA graphs (a CUDA LibTorch).
  static bool supported();

  CudaGraphCache();
  ~CudaGraphCache();
  CudaGraphCache(const CudaGraphCache&) = delete;
  CudaGraphCache& operator=(const CudaGraphCache&) = delete;

  // False once a capture has failed (everything runs eagerly from then on).
  bool usable() const;

  // The image embedding of `image`, or nullopt where graphs do not apply.
  std::optional<torch::Tensor> encode(MSAMImpl& model, const torch::Tensor& image);
  // One click (prompt encoder, adapter, decoder), or nullopt where graphs do not apply.
  std::optional<MaskPrediction> click(MSAMImpl& model, const VolumeContext& ctx,
                                      const torch::Tensor& points, const torch::Tensor& labels,
                                      const torch::Tensor& low_res_mask);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace msam::model
