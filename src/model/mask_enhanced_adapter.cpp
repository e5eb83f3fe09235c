#include "msam/model/mask_enhanced_adapter.h"

#include <torch/torch.h>

#include "msam/common/error.h"
#include "msam/common/shape.h"

namespace msam::model {
namespace {

torch::Tensor channels_last(const torch::Tensor& x) { return x.permute({0, 2, 3, 4, 1}); }
torch::Tensor channels_first(const torch::Tensor& x) { return x.permute({0, 4, 1, 2, 3}); }

torch::nn::Conv3d conv(int64_t width, int64_t kernel) {
  return torch::nn::Conv3d(torch::nn::Conv3dOptions(width, width, kernel).padding(kernel / 2));
}

}  // namespace

AdapterAttentionImpl::AdapterAttentionImpl(int64_t width, int64_t heads, int64_t grid_)
    : num_heads(heads), grid(grid_) {
  const int64_t head_dim = width / heads;
  qkv = register_module("qkv", torch::nn::Linear(width, 3 * width));
  proj = register_module("proj", torch::nn::Linear(width, width));
  // The reference's `rel_pos_zero_init` is ignored; loading weights sets the tables.
  rel_pos_d = register_parameter("rel_pos_d", torch::zeros({2 * grid - 1, head_dim}));
  rel_pos_h = register_parameter("rel_pos_h", torch::zeros({2 * grid - 1, head_dim}));
  rel_pos_w = register_parameter("rel_pos_w", torch::zeros({2 * grid - 1, head_dim}));
  norm1 = register_module("norm1", LayerNorm3d(width));
  norm2 = register_module("norm2", LayerNorm3d(width));
  mlp = register_module("mlp", MLPBlock(width, 4 * width));
}

torch::Tensor AdapterAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), N = grid * grid * grid;
  auto y = channels_last(norm1(channels_first(x)));
  auto a = global_rel_pos_attention(qkv(y).reshape({B, N, -1}), grid, num_heads, rel_pos_d,
                                    rel_pos_h, rel_pos_w);
  y = proj(a) + x;
  return mlp(channels_last(norm2(channels_first(y))));
}

BiDirectionalAttentionImpl::BiDirectionalAttentionImpl(int64_t width, int64_t heads,
                                                       int64_t grid) {
  prompt_conv1 = register_module("prompt_conv1", conv(width, 3));
  prompt_conv2 = register_module("prompt_conv2", conv(width, 1));
  image_conv1 = register_module("image_conv1", conv(width, 3));
  image_conv2 = register_module("image_conv2", conv(width, 1));
  prompt_norm = register_module("prompt_norm", LayerNorm3d(width));
  image_norm = register_module("image_norm", LayerNorm3d(width));
  prompt_addnorm1 = register_module("prompt_addnorm1", LayerNorm3d(width));
  prompt_addnorm2 = register_module("prompt_addnorm2", LayerNorm3d(width));
  prompt_addnorm3 = register_module("prompt_addnorm3", LayerNorm3d(width));
  image_addnorm1 = register_module("image_addnorm1", LayerNorm3d(width));
  image_addnorm2 = register_module("image_addnorm2", LayerNorm3d(width));
  image_addnorm3 = register_module("image_addnorm3", LayerNorm3d(width));
  prompt_multiheadattn =
      register_module("prompt_multiheadattn", AdapterAttention(width, heads, grid));
  image_multiheadattn =
      register_module("image_multiheadattn", AdapterAttention(width, heads, grid));
  mlp1 = register_module("mlp1", MLPBlock(width, 4 * width));
  mlp2 = register_module("mlp2", MLPBlock(width, 4 * width));
}

torch::Tensor BiDirectionalAttentionImpl::update_image(const torch::Tensor& image) {
  auto u = image_conv2(torch::gelu(image_norm(image_conv1(image))));
  return image_addnorm1(u + image);
}

torch::Tensor BiDirectionalAttentionImpl::update_prompt(const torch::Tensor& prompt) {
  auto u = prompt_conv2(torch::gelu(prompt_norm(prompt_conv1(prompt))));
  return prompt_addnorm1(u + prompt);
}

std::pair<torch::Tensor, torch::Tensor> BiDirectionalAttentionImpl::forward(
    const torch::Tensor& image, const torch::Tensor& updated_image, const torch::Tensor& prompt) {
  auto updated_prompt = update_prompt(prompt);
  // The image stream attends over ui + I + P, the prompt stream over I + up + P.
  auto qkv_i = updated_image + image + prompt;
  auto qkv_p = image + updated_prompt + prompt;

  auto oi = channels_first(image_multiheadattn(channels_last(qkv_i)));
  oi = image_addnorm2(oi + updated_image);
  oi = image_addnorm3(channels_first(mlp1(channels_last(oi))) + oi);

  auto op = channels_first(prompt_multiheadattn(channels_last(qkv_p)));
  op = prompt_addnorm2(op + updated_prompt);
  op = prompt_addnorm3(channels_first(mlp2(channels_last(op))) + op);
  return {oi, op};
}

MaskEnhancedAdapterImpl::MaskEnhancedAdapterImpl(const MaskEnhancedAdapterOptions& o)
    : options_(o) {
  if (o.width <= 0 || o.num_heads <= 0 || o.width % o.num_heads != 0)
    throw Error("mask-enhanced adapter: width " + std::to_string(o.width) +
                " must be a positive multiple of num_heads " + std::to_string(o.num_heads));
  if (o.grid <= 0 || o.num_blocks < 1)
    throw Error("mask-enhanced adapter: grid and num_blocks must be at least 1");
  bidirectional_attentions = register_module("bidirectional_attentions", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_blocks; ++i)
    bidirectional_attentions->push_back(BiDirectionalAttention(o.width, o.num_heads, o.grid));
  multi_head_self_attention = register_module("multi_head_self_attention",
                                              AdapterAttention(o.width, o.num_heads, o.grid));
  add_norm = register_module("add_norm", LayerNorm3d(o.width));
  add_norm2 = register_module("add_norm2", LayerNorm3d(o.width));
  add_norm3 = register_module("add_norm3", LayerNorm3d(o.width));
  add_norm4 = register_module("add_norm4", LayerNorm3d(o.width));
  mlp = register_module("mlp", MLPBlock(o.width, 4 * o.width));
}

void MaskEnhancedAdapterImpl::check_input(const torch::Tensor& t, const char* what) const {
  const int64_t c = options_.width, g = options_.grid;
  if (t.dim() != 5 || t.size(1) != c || t.size(2) != g || t.size(3) != g || t.size(4) != g)
    throw Error(std::string("mask-enhanced adapter: ") + what + " must be [B, " +
                std::to_string(c) + ", " + std::to_string(g) + ", " + std::to_string(g) + ", " +
                std::to_string(g) + "], got " + shape_str(t.sizes()));
}

MaskEnhancedAdapterImpl::ImageSide MaskEnhancedAdapterImpl::precompute(
    const torch::Tensor& image_embedding) {
  check_input(image_embedding, "image embedding");
  ImageSide side;
  side.image = add_norm3(image_embedding);
  side.updated_image =
      bidirectional_attentions->ptr<BiDirectionalAttentionImpl>(0)->update_image(side.image);
  return side;
}

MaskEnhancedAdapterImpl::Trace MaskEnhancedAdapterImpl::forward_trace(
    const ImageSide& side, const torch::Tensor& prompt_embedding) {
  check_input(prompt_embedding, "prompt embedding");
  if (!side.image.defined() || !side.updated_image.defined())
    throw Error("mask-enhanced adapter: the image side was not computed (call precompute)");
  const int64_t bi = side.image.size(0), bp = prompt_embedding.size(0);
  if (bi != bp && bi != 1)
    throw Error("mask-enhanced adapter: image batch " + std::to_string(bi) +
                " does not match prompt batch " + std::to_string(bp));
  Trace trace;
  auto prompt = add_norm2(prompt_embedding);
  auto image_out = side.image, prompt_out = prompt;
  for (size_t k = 0; k < bidirectional_attentions->size(); ++k) {
    auto block = bidirectional_attentions->ptr<BiDirectionalAttentionImpl>(k);
    auto updated = k == 0 ? side.updated_image : block->update_image(image_out);
    std::tie(image_out, prompt_out) = block->forward(image_out, updated, prompt_out);
    trace.block_image.push_back(image_out);
    trace.block_prompt.push_back(prompt_out);
  }
  auto qkv = image_out + side.image + prompt_out + prompt;
  auto o = channels_first(multi_head_self_attention(channels_last(qkv)));
  o = add_norm(o + qkv);
  // The final MLP keeps its residual and has no norm after it (docs/design.md §4.7).
  trace.output = o + channels_first(mlp(channels_last(o)));
  return trace;
}

torch::Tensor MaskEnhancedAdapterImpl::forward(const ImageSide& side,
                                               const torch::Tensor& prompt_embedding) {
  return forward_trace(side, prompt_embedding).output;
}

torch::Tensor MaskEnhancedAdapterImpl::forward(const torch::Tensor& image_embedding,
                                               const torch::Tensor& prompt_embedding) {
  return forward(precompute(image_embedding), prompt_embedding);
}

}  // namespace msam::model
