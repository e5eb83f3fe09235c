// The mask decoder of M-SAM (reference `new_MaskDecoder3D` with its `TwoWayTransformer3D`):
// SAM's two-way transformer over [IoU token, mask tokens, prompt tokens] and the adapted
// image embedding, then upscaling and hypernetwork mask prediction.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "msam/model/layers.h"
#include "msam/model/mask_enhanced_adapter.h"

namespace msam::model {

struct MaskDecoderOptions {
  int64_t transformer_dim = 384;
  int64_t num_multimask_outputs = 3;
  int64_t iou_head_depth = 3;
  int64_t iou_head_hidden_dim = 256;
  int64_t transformer_depth = 2;
  int64_t transformer_num_heads = 8;
  int64_t transformer_mlp_dim = 2048;
  int64_t attention_downsample_rate = 2;
};

// SAM's token attention (reference `Attention` in new_mask_decoder3D.py): q/k/v projected to
// embedding_dim / downsample_rate, multi-head softmax attention, projected back.
class TokenAttentionImpl : public torch::nn::Module {
 public:
  TokenAttentionImpl(int64_t embedding_dim, int64_t num_heads, int64_t downsample_rate = 1);
  torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t num_heads;
};
TORCH_MODULE(TokenAttention);

// Self-attention of the tokens, token→image attention, token MLP, image→token attention,
// each followed by a LayerNorm (eps 1e-5). With skip_first_layer_pe the self-attention sees
// no PE and has no residual (reference layer 0, docs/design.md §2.6).
class TwoWayAttentionBlock3DImpl : public torch::nn::Module {
 public:
  TwoWayAttentionBlock3DImpl(int64_t dim, int64_t num_heads, int64_t mlp_dim,
                             int64_t downsample_rate, bool skip_first_layer_pe);
  std::pair<torch::Tensor, torch::Tensor> forward(torch::Tensor queries, torch::Tensor keys,
                                                  const torch::Tensor& query_pe,
                                                  const torch::Tensor& key_pe);
  TokenAttention self_attn{nullptr}, cross_attn_token_to_image{nullptr},
      cross_attn_image_to_token{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr}, norm4{nullptr};
  MLPBlock mlp{nullptr};
  bool skip_first_layer_pe;
};
TORCH_MODULE(TwoWayAttentionBlock3D);

class TwoWayTransformer3DImpl : public torch::nn::Module {
 public:
  TwoWayTransformer3DImpl(int64_t depth, int64_t dim, int64_t num_heads, int64_t mlp_dim,
                          int64_t downsample_rate);
  // image_embedding, image_pe: B×C×g³; point_embedding: B×T×C. Returns (queries B×T×C,
  // keys B×g³×C).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image_embedding,
                                                  const torch::Tensor& image_pe,
                                                  const torch::Tensor& point_embedding);
  torch::nn::ModuleList layers{nullptr};
  TokenAttention final_attn_token_to_image{nullptr};
  torch::nn::LayerNorm norm_final_attn{nullptr};
};
TORCH_MODULE(TwoWayTransformer3D);

// Linear layers with ReLU between them (reference `MLP`): the hypernetworks and IoU head.
class DecoderMLPImpl : public torch::nn::Module {
 public:
  DecoderMLPImpl(int64_t input_dim, int64_t hidden_dim, int64_t output_dim, int64_t num_layers);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(DecoderMLP);

struct MaskPrediction {
  torch::Tensor low_res_masks;  // B × M × (4g)³ logits
  torch::Tensor iou_pred;       // B × M
};

// Everything `predict_masks` computes, before the single/multimask selection.
struct MaskDecoderTrace {
  torch::Tensor masks;     // B × num_mask_tokens × (4g)³
  torch::Tensor iou_pred;  // B × num_mask_tokens
  torch::Tensor queries;   // B × (1 + num_mask_tokens + N_sparse) × C, transformer output
  torch::Tensor keys;      // B × g³ × C, transformer output
};

class MaskDecoder3DImpl : public torch::nn::Module {
 public:
  explicit MaskDecoder3DImpl(const MaskDecoderOptions& options = {});

  // src: the adapter output (B×C×g³); image_pe: 1×C×g³ or B×C×g³; sparse: B×N×C.
  // multimask selects masks 1..num_multimask_outputs, otherwise mask 0 alone.
  MaskPrediction forward(const torch::Tensor& src, const torch::Tensor& image_pe,
                         const torch::Tensor& sparse, bool multimask);
  // The reference call: an image batch smaller than the prompt batch is repeated first, then
  // `adapter(image, dense)` replaces SAM's `image + dense`.
  MaskPrediction forward(const torch::Tensor& image_embeddings, const torch::Tensor& image_pe,
                         const torch::Tensor& sparse, const torch::Tensor& dense, bool multimask,
                         MaskEnhancedAdapter& adapter);
  MaskDecoderTrace predict_masks(const torch::Tensor& src, const torch::Tensor& image_pe,
                                 const torch::Tensor& sparse);
  // Picks the reference's single-mask or multimask outputs from a trace.
  MaskPrediction select(const MaskDecoderTrace& trace, bool multimask) const;

  const MaskDecoderOptions& options() const { return options_; }

  TwoWayTransformer3D transformer{nullptr};
  torch::nn::Embedding iou_token{nullptr}, mask_tokens{nullptr};
  torch::nn::Sequential output_upscaling{nullptr};
  torch::nn::ModuleList output_hypernetworks_mlps{nullptr};
  DecoderMLP iou_prediction_head{nullptr};

 private:
  MaskDecoderOptions options_;
};
TORCH_MODULE(MaskDecoder3D);

}  // namespace msam::model
