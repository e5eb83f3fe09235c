// The 3D ViT image encoder of SAM-Med3D / M-SAM (`ImageEncoderViT3D`), optionally with LoRA on
// every block's qkv projection. Parameter names are the reference state_dict keys (without
// the `image_encoder.` prefix).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "msam/model/architecture.h"
#include "msam/model/layers.h"
#include "msam/model/lora.h"
#include "msam/model/window_attention.h"

namespace msam::model {

// Multi-head self-attention over cubes of tokens with the reference's scrambled decomposed
// relative position (layers.h). Parameters: qkv (or, with LoRA, qkv.qkv + qkv.linear_*),
// proj, rel_pos_d/h/w with 2·side−1 rows.
class Attention3DImpl : public torch::nn::Module {
 public:
  // `side`: the cube side the relative-position tables cover (the window for windowed
  // blocks, the token grid for global ones).
  Attention3DImpl(int64_t dim, int64_t num_heads, bool qkv_bias, bool use_rel_pos, int64_t side,
                  int64_t lora_rank);
  // Attention within each cube of x: (B, side, side, side, C) → same shape, after proj.
  torch::Tensor forward(const torch::Tensor& x);
  // The reference's attention over x (B, n, n, n, C) zero-padded to side³ with unmasked pad
  // tokens, for the real positions only, via the pad-key closed form (n < side).
  torch::Tensor forward_pad_key(const torch::Tensor& x);
  // Replaces the LoRA wrapper by a plain qkv projection with B·A folded in.
  void merge_lora();
  bool has_lora() const { return !lora_qkv.is_empty(); }

  int64_t num_heads, side;
  torch::nn::Linear qkv{nullptr};  // the base projection (inside lora_qkv when LoRA is on)
  LoRAQkv lora_qkv{nullptr};
  torch::nn::Linear proj{nullptr};
  torch::Tensor rel_pos_d, rel_pos_h, rel_pos_w;  // undefined without relative position

 private:
  torch::Tensor project_qkv(const torch::Tensor& x);
  torch::Tensor project_out(const torch::Tensor& x);
  torch::Tensor attend(const torch::Tensor& qkv, int64_t side);
};
TORCH_MODULE(Attention3D);

// Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(·)). Windowed blocks
// (window > 0) pad/partition the grid as the reference does; global blocks attend over it.
class Block3DImpl : public torch::nn::Module {
 public:
  Block3DImpl(const ImageEncoderConfig& config, int64_t window);
  torch::Tensor forward(const torch::Tensor& x);
  // The attention branch on norm1's output (B, D, H, W, C), windowing included.
  torch::Tensor attention(const torch::Tensor& x);

  int64_t window;  // 0: global
  WindowPath window_path = WindowPath::Fast;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention3D attn{nullptr};
  MLPBlock mlp{nullptr};
};
TORCH_MODULE(Block3D);

// Conv3d with kernel = stride = patch size, output channels-last (B, D, H, W, C).
class PatchEmbed3DImpl : public torch::nn::Module {
 public:
  PatchEmbed3DImpl(int64_t patch_size, int64_t in_chans, int64_t embed_dim);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv3d proj{nullptr};
};
TORCH_MODULE(PatchEmbed3D);

class ImageEncoderViT3DImpl : public torch::nn::Module {
 public:
  explicit ImageEncoderViT3DImpl(ImageEncoderConfig config = {});
  // B×in_chans×S×S×S (S = img_size) → image embedding B×out_chans×g×g×g (g = S / patch).
  // Any other input shape is an msam::Error.
  torch::Tensor forward(const torch::Tensor& image);

  const ImageEncoderConfig& config() const { return config_; }
  Block3DImpl& block(size_t i) { return *blocks->ptr<Block3DImpl>(i); }
  // Selects the windowed blocks' computation (WindowPath::Fast by default).
  void set_window_path(WindowPath path);
  // frozen: every parameter except LoRA A/B stops requiring gradients (the reference
  // freezes the encoder and trains only LoRA); false: everything trainable again.
  void freeze_base(bool frozen = true);
  // The LoRA A/B weights of all blocks (empty without LoRA).
  std::vector<torch::Tensor> lora_parameters();
  // Folds every block's LoRA into its qkv weight for inference; afterwards the encoder is a
  // plain one (lora_rank 0, SAM-Med3D key names).
  void merge_lora();

  PatchEmbed3D patch_embed{nullptr};
  torch::Tensor pos_embed;  // 1×g×g×g×C, undefined without absolute position
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Sequential neck{nullptr};

 private:
  // The neck on channels-last tokens B×g×g×g×C as matrix products (CPU).
  torch::Tensor neck_as_matmuls(const torch::Tensor& x);
  ImageEncoderConfig config_;
};
TORCH_MODULE(ImageEncoderViT3D);

}  // namespace msam::model
