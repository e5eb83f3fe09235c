// The Mask-Enhanced Adapter (MEA) of M-SAM (reference `BiDirectionalAttentionNetwork`,
// mea.py): fuses the image embedding with the dense mask-prompt embedding before the mask
// decoder. Parameter names follow the reference state_dict.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "msam/model/layers.h"

namespace msam::model {

// The reference hard-codes width 384, 6 heads and an 8³ grid; they are options here so that
// small models can be built, with the reference values as defaults.
struct MaskEnhancedAdapterOptions {
  int64_t width = 384;
  int64_t num_heads = 6;  // head_dim = width / num_heads
  int64_t grid = 8;       // token grid edge (cube)
  int64_t num_blocks = 1;
};

// The adapter's self-attention unit (reference mea.py `Attention`) on B×g×g×g×C tokens:
//   y = proj(MHSA(norm1(x))) + x;  return mlp(norm2(y))
// MHSA uses the scrambled decomposed rel-pos (docs/design.md §4.1). There is no residual
// around the MLP: the output is the MLP output alone (docs/design.md §4.7).
class AdapterAttentionImpl : public torch::nn::Module {
 public:
  AdapterAttentionImpl(int64_t width, int64_t num_heads, int64_t grid);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::Tensor rel_pos_d, rel_pos_h, rel_pos_w;
  LayerNorm3d norm1{nullptr}, norm2{nullptr};
  MLPBlock mlp{nullptr};
  int64_t num_heads, grid;
};
TORCH_MODULE(AdapterAttention);

// One image/prompt block (reference `new_BiDirectionalAttention`). Despite the name there is
// no cross attention: each stream self-attends over a sum of both (docs/design.md §4.7).
class BiDirectionalAttentionImpl : public torch::nn::Module {
 public:
  BiDirectionalAttentionImpl(int64_t width, int64_t num_heads, int64_t grid);

  // ui = image_addnorm1(conv2(GELU(norm(conv1(I)))) + I): depends on the image input only.
  torch::Tensor update_image(const torch::Tensor& image);
  torch::Tensor update_prompt(const torch::Tensor& prompt);
  // (oi, op) from the image input I, its update ui = update_image(I) and the prompt input P.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image,
                                                  const torch::Tensor& updated_image,
                                                  const torch::Tensor& prompt);

  torch::nn::Conv3d prompt_conv1{nullptr}, prompt_conv2{nullptr};
  torch::nn::Conv3d image_conv1{nullptr}, image_conv2{nullptr};
  LayerNorm3d prompt_norm{nullptr}, image_norm{nullptr};
  LayerNorm3d prompt_addnorm1{nullptr}, prompt_addnorm2{nullptr}, prompt_addnorm3{nullptr};
  LayerNorm3d image_addnorm1{nullptr}, image_addnorm2{nullptr}, image_addnorm3{nullptr};
  AdapterAttention prompt_multiheadattn{nullptr}, image_multiheadattn{nullptr};
  MLPBlock mlp1{nullptr}, mlp2{nullptr};
};
TORCH_MODULE(BiDirectionalAttention);

class MaskEnhancedAdapterImpl : public torch::nn::Module {
 public:
  // Everything that depends on the image embedding alone. During click refinement the image
  // is fixed, so this is computed once per volume and reused for every click.
  struct ImageSide {
    torch::Tensor image;          // add_norm3(I)
    torch::Tensor updated_image;  // block 0's image conv stream on add_norm3(I)
  };
  // The output with every block's (image, prompt) outputs, for inspection and tests.
  struct Trace {
    torch::Tensor output;
    std::vector<torch::Tensor> block_image, block_prompt;
  };

  explicit MaskEnhancedAdapterImpl(const MaskEnhancedAdapterOptions& options = {});

  ImageSide precompute(const torch::Tensor& image_embedding);
  // image_embedding and prompt_embedding: B×width×g³ (the image side may have batch 1 and is
  // then shared by every prompt). Returns B×width×g³.
  torch::Tensor forward(const ImageSide& image, const torch::Tensor& prompt_embedding);
  torch::Tensor forward(const torch::Tensor& image_embedding,
                        const torch::Tensor& prompt_embedding);
  Trace forward_trace(const ImageSide& image, const torch::Tensor& prompt_embedding);

  const MaskEnhancedAdapterOptions& options() const { return options_; }

  torch::nn::ModuleList bidirectional_attentions{nullptr};
  AdapterAttention multi_head_self_attention{nullptr};
  LayerNorm3d add_norm{nullptr}, add_norm2{nullptr}, add_norm3{nullptr};
  LayerNorm3d add_norm4{nullptr};  // a reference parameter that its forward never uses
  MLPBlock mlp{nullptr};

 private:
  void check_input(const torch::Tensor& t, const char* what) const;
  MaskEnhancedAdapterOptions options_;
};
TORCH_MODULE(MaskEnhancedAdapter);

}  // namespace msam::model
