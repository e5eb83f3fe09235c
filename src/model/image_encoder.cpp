#include "msam/model/image_encoder.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "msam/common/compat.h"
#include "msam/common/cpu_gemm.h"
#include "msam/common/error.h"

namespace msam::model {

// ---- attention --------------------------------------------------------------------------

Attention3DImpl::Attention3DImpl(int64_t dim, int64_t heads, bool qkv_bias, bool use_rel_pos,
                                 int64_t side_, int64_t lora_rank)
    : num_heads(heads), side(side_) {
  qkv = torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias));
  if (lora_rank > 0)
    lora_qkv = register_module("qkv", LoRAQkv(qkv, lora_rank));
  else
    register_module("qkv", qkv);
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  if (use_rel_pos) {
    // Zero-initialised like the reference (rel_pos_zero_init is ignored there as well).
    const int64_t hd = dim / heads;
    rel_pos_d = register_parameter("rel_pos_d", torch::zeros({2 * side - 1, hd}));
    rel_pos_h = register_parameter("rel_pos_h", torch::zeros({2 * side - 1, hd}));
    rel_pos_w = register_parameter("rel_pos_w", torch::zeros({2 * side - 1, hd}));
  }
}

torch::Tensor Attention3DImpl::project_qkv(const torch::Tensor& x) {
  return has_lora() ? lora_qkv(x) : cpu::linear(x, qkv->weight, qkv->bias);
}

torch::Tensor Attention3DImpl::attend(const torch::Tensor& qkv_out, int64_t n) {
  const int64_t B = qkv_out.size(0), C = qkv_out.size(-1) / 3, hd = C / num_heads;
  if (rel_pos_d.defined())
    return global_rel_pos_attention(qkv_out.reshape({B, n * n * n, 3 * C}), n, num_heads,
                                    rel_pos_d, rel_pos_h, rel_pos_w);
  auto t = qkv_out.reshape({B, n * n * n, 3, num_heads, hd}).permute({2, 0, 3, 1, 4});
  auto out = compat::attention(t[0], t[1], t[2], {},
                               1.0 / std::sqrt(static_cast<double>(hd)));
  return out.permute({0, 2, 1, 3}).reshape({B, n, n, n, C});
}

torch::Tensor Attention3DImpl::project_out(const torch::Tensor& x) {
  return cpu::linear(x, proj->weight, proj->bias);
}

torch::Tensor Attention3DImpl::forward(const torch::Tensor& x) {
  return project_out(attend(project_qkv(x), x.size(1)));
}

torch::Tensor Attention3DImpl::forward_pad_key(const torch::Tensor& x) {
  const int64_t B = x.size(0), n = x.size(1), C = x.size(4), hd = C / num_heads;
  auto t = project_qkv(x).reshape({B, n * n * n, 3, num_heads, hd}).permute({2, 0, 3, 1, 4});
  // Pad tokens are zero vectors after norm1, so their q, k and v are the qkv bias (LoRA adds
  // B·A·0 = 0 to them).
  auto bias = qkv->options.bias() ? qkv->bias.view({3, num_heads, hd})
                                  : torch::zeros({3, num_heads, hd}, x.options());
  auto out = pad_key_window_attention(t[0], t[1], t[2], bias, n, side, rel_pos_d, rel_pos_h,
                                      rel_pos_w, 1.0 / std::sqrt(static_cast<double>(hd)));
  return project_out(out.permute({0, 2, 1, 3}).reshape({B, n, n, n, C}));
}

void Attention3DImpl::merge_lora() {
  if (!has_lora()) return;
  auto merged = lora_qkv->merged();
  const bool trainable = qkv->weight.requires_grad();
  for (auto& p : merged->parameters()) p.requires_grad_(trainable);
  qkv = replace_module("qkv", merged);
  lora_qkv = nullptr;
}

// ---- block ------------------------------------------------------------------------------

Block3DImpl::Block3DImpl(const ImageEncoderConfig& c, int64_t window_) : window(window_) {
  auto norm = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.embed_dim}).eps(c.norm_eps));
  };
  norm1 = register_module("norm1", norm());
  attn = register_module("attn", Attention3D(c.embed_dim, c.num_heads, c.qkv_bias, c.use_rel_pos,
                                             window > 0 ? window : c.grid(), c.lora_rank));
  norm2 = register_module("norm2", norm());
  mlp = register_module(
      "mlp", MLPBlock(c.embed_dim, static_cast<int64_t>(c.embed_dim * c.mlp_ratio)));
}

torch::Tensor Block3DImpl::attention(const torch::Tensor& x) {
  if (window == 0) return attn(x);
  const int64_t D = x.size(1), H = x.size(2), W = x.size(3);
  // The reference pads the grid with zero tokens (after norm1, without masking them). For a
  // cubic grid inside one window that has a closed form; otherwise run it literally.
  if (window_path == WindowPath::Fast && D == H && H == W && D < window)
    return attn->forward_pad_key(x);
  auto [windows, padded] = window_partition3d(x, window);
  return window_unpartition3d(attn(windows), window, padded, {D, H, W});
}

torch::Tensor Block3DImpl::forward(const torch::Tensor& x) {
  auto y = x + attention(norm1(x));
  return y + mlp(norm2(y));
}

// ---- encoder ----------------------------------------------------------------------------

PatchEmbed3DImpl::PatchEmbed3DImpl(int64_t patch_size, int64_t in_chans, int64_t embed_dim) {
  proj = register_module(
      "proj", torch::nn::Conv3d(torch::nn::Conv3dOptions(in_chans, embed_dim, patch_size)
                                    .stride(patch_size)));
}

torch::Tensor PatchEmbed3DImpl::forward(const torch::Tensor& x) {
  // The stride-p convolution with a p³ kernel as one matrix product over the patches (same
  // sum, one GEMM instead of a convolution kernel): B×C×(g·p)³ → B×g×g×g×(C·p³).
  const int64_t B = x.size(0), C = x.size(1), p = proj->options.kernel_size()->at(0);
  const int64_t g = x.size(2) / p;
  auto patches = x.reshape({B, C, g, p, g, p, g, p})
                     .permute({0, 2, 4, 6, 1, 3, 5, 7})
                     .reshape({B, g, g, g, C * p * p * p});
  return cpu::linear(patches, proj->weight.reshape({proj->weight.size(0), -1}), proj->bias);
}

ImageEncoderViT3DImpl::ImageEncoderViT3DImpl(ImageEncoderConfig config)
    : config_(std::move(config)) {
  const auto& c = config_;
  c.validate();
  const int64_t g = c.grid();
  patch_embed = register_module("patch_embed", PatchEmbed3D(c.patch_size, c.in_chans, c.embed_dim));
  if (c.use_abs_pos)
    pos_embed = register_parameter("pos_embed", torch::zeros({1, g, g, g, c.embed_dim}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.depth; ++i) {
    const bool global = std::count(c.global_attn_indexes.begin(), c.global_attn_indexes.end(), i);
    blocks->push_back(Block3D(c, global ? 0 : c.window_size));
  }
  using torch::nn::Conv3dOptions;
  neck = register_module(
      "neck", torch::nn::Sequential(
                  torch::nn::Conv3d(Conv3dOptions(c.embed_dim, c.out_chans, 1).bias(false)),
                  LayerNorm3d(c.out_chans),
                  torch::nn::Conv3d(Conv3dOptions(c.out_chans, c.out_chans, 3).padding(1).bias(false)),
                  LayerNorm3d(c.out_chans)));
}

torch::Tensor ImageEncoderViT3DImpl::forward(const torch::Tensor& image) {
  const auto& c = config_;
  const auto s = image.sizes();
  if (s.size() != 5 || s[1] != c.in_chans || s[2] != c.img_size || s[3] != c.img_size ||
      s[4] != c.img_size) {
    std::ostringstream msg;
    msg << "image encoder: expected an input of shape B×" << c.in_chans << "×" << c.img_size
        << "×" << c.img_size << "×" << c.img_size << ", got " << s;
    throw Error(msg.str());
  }
  auto x = patch_embed(image);
  if (pos_embed.defined()) x = x + pos_embed;
  for (size_t i = 0; i < blocks->size(); ++i) x = block(i).forward(x);
  if (x.is_cpu()) return neck_as_matmuls(x);
  return neck->forward(x.permute({0, 4, 1, 2, 3}));
}

torch::Tensor ImageEncoderViT3DImpl::neck_as_matmuls(const torch::Tensor& x) {
  // Same sums as the convolutions: on the CPU, the 3×3×3 one as a single product over its 27
  // shifted copies of the tokens (im2col) takes half the time of the convolution kernel.
  const auto& conv1 = neck[0]->as<torch::nn::Conv3d>()->weight;
  const auto& conv2 = neck[2]->as<torch::nn::Conv3d>()->weight;
  auto norm = [](const torch::Tensor& t, LayerNorm3dImpl& ln) {
    return at::layer_norm(t, {t.size(-1)}, ln.weight, ln.bias, ln.eps);
  };
  const int64_t B = x.size(0), g = x.size(1), C = conv2.size(0);
  auto y = norm(cpu::linear(x, conv1.view({conv1.size(0), -1}), {}), *neck[1]->as<LayerNorm3d>());
  const auto padded = at::constant_pad_nd(y, {0, 0, 1, 1, 1, 1, 1, 1});
  std::vector<torch::Tensor> shifted;
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 3; ++c)
        shifted.push_back(padded.slice(1, a, a + g).slice(2, b, b + g).slice(3, c, c + g));
  const auto columns = at::stack(shifted, 4).view({B, g, g, g, 27 * C});
  const auto weight = conv2.permute({0, 2, 3, 4, 1}).reshape({C, 27 * conv2.size(1)});
  y = norm(cpu::linear(columns, weight, {}), *neck[3]->as<LayerNorm3d>());
  return y.permute({0, 4, 1, 2, 3}).contiguous();
}

void ImageEncoderViT3DImpl::set_window_path(WindowPath path) {
  for (size_t i = 0; i < blocks->size(); ++i) block(i).window_path = path;
}

void ImageEncoderViT3DImpl::freeze_base(bool frozen) {
  for (auto& p : parameters()) p.requires_grad_(!frozen);
  for (auto& p : lora_parameters()) p.requires_grad_(true);
}

std::vector<torch::Tensor> ImageEncoderViT3DImpl::lora_parameters() {
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto& attn = *block(i).attn;
    if (!attn.has_lora()) continue;
    const auto& l = attn.lora_qkv;
    for (const auto& m : {l->linear_a_q, l->linear_b_q, l->linear_a_v, l->linear_b_v})
      out.push_back(m->weight);
  }
  return out;
}

void ImageEncoderViT3DImpl::merge_lora() {
  for (size_t i = 0; i < blocks->size(); ++i) block(i).attn->merge_lora();
  config_.lora_rank = 0;
}

}  // namespace msam::model
