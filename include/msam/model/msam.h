// The whole M-SAM network: image encoder (+LoRA), prompt encoder, Mask-Enhanced Adapter and
// mask decoder, with the per-volume work (encoder, adapter image side, dense PE) done once.
#pragma once
#include <torch/nn/module.h>

#include <map>
#include <optional>
#include <string>

#include "msam/model/architecture.h"
#include "msam/model/cuda_graphs.h"
#include "msam/model/image_encoder.h"
#include "msam/model/mask_decoder.h"
#include "msam/model/mask_enhanced_adapter.h"
#include "msam/model/prompt_encoder.h"

namespace msam::model {

// Everything per volume that every click reuses.
struct VolumeContext {
  torch::Tensor image_embedding;                      // B × width × g³
  MaskEnhancedAdapterImpl::ImageSide adapter_image;   // the adapter's image-only stream
  torch::Tensor dense_pe;                             // 1 × width × g³
};

class MSAMImpl : public torch::nn::Module {
 public:
  explicit MSAMImpl(MSAMConfig config = {});

  // image: B × 1 × S³ (z-scored). Runs the encoder and the per-volume adapter work.
  VolumeContext encode(const torch::Tensor& image);
  VolumeContext context(const torch::Tensor& image_embedding);

  // One refinement iteration: clicks (points B×N×3 voxel (d,h,w), labels B×N: 1 fg, 0 bg)
  // plus the previous low-res logits (B×1×(4g)³) → new low-res logits and predicted IoU.
  MaskPrediction click(const VolumeContext& ctx, const torch::Tensor& points,
                       const torch::Tensor& labels, const torch::Tensor& low_res_mask);
  // click() in two parts. adapt(): the previous low-res logits as the dense prompt, through the
  // Mask-Enhanced Adapter with the image (B×width×g³). It does not depend on the clicks, so an
  // interactive session runs it in the pause before the next click. decode(): the clicks'
  // sparse prompt and the mask decoder on that. decode(ctx, adapt(ctx, m), p, l) is
  // click_eager(ctx, p, l, m), op for op.
  torch::Tensor adapt(const VolumeContext& ctx, const torch::Tensor& low_res_mask);
  MaskPrediction decode(const VolumeContext& ctx, const torch::Tensor& adapted,
                        const torch::Tensor& points, const torch::Tensor& labels);
  // The same, always run op by op (what a CUDA graph captures).
  MaskPrediction click_eager(const VolumeContext& ctx, const torch::Tensor& points,
                             const torch::Tensor& labels, const torch::Tensor& low_res_mask);

  // Inference from captured CUDA graphs (cuda_graphs.h): encode() and click() replay them for
  // CUDA inputs in eval mode without autograd. A no-op in builds without CUDA.
  void set_cuda_graphs(bool enabled);
  // Whether encode()/click() can replay graphs (enabled, supported, no capture failed).
  bool cuda_graphs_usable() const { return cuda_graphs_ && cuda_graphs_->usable(); }

  // Low-res logits → full-size logits (trilinear, align_corners=false, as the reference).
  torch::Tensor upsample(const torch::Tensor& low_res) const;

  const MSAMConfig& config() const { return config_; }

  ImageEncoderViT3D image_encoder{nullptr};
  PromptEncoder3D prompt_encoder{nullptr};
  MaskEnhancedAdapter adapter{nullptr};
  MaskDecoder3D mask_decoder{nullptr};

 private:
  bool use_graphs(const torch::Tensor& input) const;

  MSAMConfig config_;
  std::shared_ptr<CudaGraphCache> cuda_graphs_;
};
TORCH_MODULE(MSAM);

// How weights from a file are matched to the model.
enum class WeightsPolicy {
  kExact,     // every model tensor must come from the file (inference, resume)
  kInitFrom,  // start of training: LoRA and adapter may be absent (SAM-Med3D checkpoints);
              // everything else must match
};

// Loads msam safetensors or a reference .pth (SAM-Med3D or M-SAM trainer layout) into
// `model`. Returns a one-line summary (what was loaded, what kept its initialisation).
// The path overload also rejects weights trained with other dense PE axes than the model's
// (reference .pth files use the reference axes).
std::string load_weights(MSAM& model, const std::string& path, WeightsPolicy policy);
std::string load_weights(MSAM& model, const std::map<std::string, at::Tensor>& state,
                         WeightsPolicy policy, const std::string& source);

// A weights file (msam safetensors or reference .pth): tensors with msam key names, and the
// architecture where the file records it (msam checkpoints do, reference .pth files do not).
struct WeightsFile {
  std::map<std::string, at::Tensor> state;
  std::optional<MSAMConfig> config;
};
WeightsFile read_weights_file(const std::string& path);

// The architecture a set of weights implies (widths, depth, heads, window, global blocks and
// LoRA rank from tensor shapes; the adapter and decoder head counts are the reference's,
// which shapes do not record). Throws msam::Error when a required tensor is missing.
MSAMConfig infer_config(const std::map<std::string, at::Tensor>& state, const std::string& source);

// A complete M-SAM for inference from `path`: the architecture is inferred from the
// weights, which must include the adapter (a SAM-Med3D checkpoint alone is rejected with an
// explanation: its adapter would be random). LoRA is merged into the qkv projections.
MSAM load_for_inference(const std::string& path, std::string* summary = nullptr);

}  // namespace msam::model
