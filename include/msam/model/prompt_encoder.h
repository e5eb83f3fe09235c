// The prompt encoder of M-SAM (reference `PromptEncoder3D`): click points become sparse
// tokens, the previous mask logits become a dense embedding on the image-embedding grid.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <optional>

#include "msam/model/dense_pe_axes.h"

namespace msam::model {

struct PromptEncoderOptions {
  int64_t embed_dim = 384;             // must be divisible by 3 (sin/cos/sin PE)
  int64_t image_embedding_size = 8;    // token grid edge (cube)
  int64_t input_image_size = 128;      // voxel grid edge the clicks live in (cube)
  int64_t mask_in_chans = 16;          // hidden channels of the mask downscaling
  DensePeAxes dense_pe_axes = DensePeAxes::kReference;
};

// Random-Fourier positional encoding (reference `PositionEmbeddingRandom3D`). Always
// evaluated in float32, as the reference does whatever the model dtype (docs/design.md §4.6).
class PositionEmbeddingRandom3DImpl : public torch::nn::Module {
 public:
  explicit PositionEmbeddingRandom3DImpl(int64_t num_pos_feats);
  // Dense grid of edge `size`: 3·num_pos_feats × size³ (float32).
  torch::Tensor forward(int64_t size, DensePeAxes axes = DensePeAxes::kReference);
  // Coordinates already divided by the image size (B×N×3, float32) → B×N×3·num_pos_feats.
  torch::Tensor encode_normalized(const torch::Tensor& coords);
  torch::Tensor positional_encoding_gaussian_matrix;  // 3 × num_pos_feats buffer
};
TORCH_MODULE(PositionEmbeddingRandom3D);

struct PromptEmbeddings {
  torch::Tensor sparse;  // B × (N+1) × dim: the clicks plus the appended padding point
  torch::Tensor dense;   // B × dim × g³
};

class PromptEncoder3DImpl : public torch::nn::Module {
 public:
  explicit PromptEncoder3DImpl(const PromptEncoderOptions& options = {});

  // points: B×N×3 voxel coordinates in (d,h,w) order, integer or floating; labels: B×N with
  // 1 = foreground, 0 = background, -1 = not a point. mask: B×1×(4g)³ logits of the previous
  // prediction, or nothing for the `no_mask_embed` path. Box prompts are not offered: the
  // reference's box path indexes point embeddings that do not exist.
  PromptEmbeddings forward(const torch::Tensor& points, const torch::Tensor& labels,
                           const std::optional<torch::Tensor>& mask = std::nullopt);

  // The two halves of forward(): the clicks' sparse tokens, and the mask's dense embedding
  // (B×1×(4g)³ logits → B×dim×g³), which does not depend on the clicks.
  torch::Tensor sparse(const torch::Tensor& points, const torch::Tensor& labels);
  torch::Tensor dense(const torch::Tensor& mask);

  // 1 × dim × g³ positional encoding of the image-embedding grid, in the module's dtype.
  torch::Tensor get_dense_pe();

  const PromptEncoderOptions& options() const { return options_; }

  PositionEmbeddingRandom3D pe_layer{nullptr};
  torch::nn::ModuleList point_embeddings{nullptr};  // 0: background, 1: foreground
  torch::nn::Embedding not_a_point_embed{nullptr};
  torch::nn::Sequential mask_downscaling{nullptr};
  torch::nn::Embedding no_mask_embed{nullptr};

 private:
  torch::Tensor embed_points(const torch::Tensor& points, const torch::Tensor& labels);
  PromptEncoderOptions options_;
};
TORCH_MODULE(PromptEncoder3D);

}  // namespace msam::model
