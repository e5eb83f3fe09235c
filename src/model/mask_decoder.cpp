#include "msam/model/mask_decoder.h"

#include <torch/torch.h>

#include <cmath>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/common/shape.h"

namespace msam::model {
namespace {

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}));  // eps 1e-5, as nn.LayerNorm
}

}  // namespace

TokenAttentionImpl::TokenAttentionImpl(int64_t dim, int64_t heads, int64_t downsample_rate)
    : num_heads(heads) {
  const int64_t internal = dim / downsample_rate;
  if (downsample_rate <= 0 || dim % downsample_rate != 0 || heads <= 0 || internal % heads != 0)
    throw Error("mask decoder: attention width " + std::to_string(dim) + " / downsample " +
                std::to_string(downsample_rate) + " must be divisible by " +
                std::to_string(heads) + " heads");
  q_proj = register_module("q_proj", torch::nn::Linear(dim, internal));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, internal));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, internal));
  out_proj = register_module("out_proj", torch::nn::Linear(internal, dim));
}

torch::Tensor TokenAttentionImpl::forward(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                          const torch::Tensor& v_in) {
  auto heads = [&](const torch::Tensor& x) {
    return x.reshape({x.size(0), x.size(1), num_heads, x.size(2) / num_heads}).transpose(1, 2);
  };
  auto q = heads(q_proj(q_in)), k = heads(k_proj(k_in)), v = heads(v_proj(v_in));
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto out = compat::attention(q, k, v, {}, scale);
  out = out.transpose(1, 2).reshape({q_in.size(0), q_in.size(1), -1});
  return out_proj(out);
}

TwoWayAttentionBlock3DImpl::TwoWayAttentionBlock3DImpl(int64_t dim, int64_t heads,
                                                       int64_t mlp_dim, int64_t downsample_rate,
                                                       bool skip_pe)
    : skip_first_layer_pe(skip_pe) {
  self_attn = register_module("self_attn", TokenAttention(dim, heads));
  norm1 = register_module("norm1", layer_norm(dim));
  cross_attn_token_to_image = register_module("cross_attn_token_to_image",
                                              TokenAttention(dim, heads, downsample_rate));
  norm2 = register_module("norm2", layer_norm(dim));
  mlp = register_module("mlp", MLPBlock(dim, mlp_dim, MLPBlockImpl::Activation::ReLU));
  norm3 = register_module("norm3", layer_norm(dim));
  norm4 = register_module("norm4", layer_norm(dim));
  cross_attn_image_to_token = register_module("cross_attn_image_to_token",
                                              TokenAttention(dim, heads, downsample_rate));
}

std::pair<torch::Tensor, torch::Tensor> TwoWayAttentionBlock3DImpl::forward(
    torch::Tensor queries, torch::Tensor keys, const torch::Tensor& query_pe,
    const torch::Tensor& key_pe) {
  if (skip_first_layer_pe) {
    // Layer 0 replaces the queries by the attention output: no residual.
    queries = self_attn(queries, queries, queries);
  } else {
    auto q = queries + query_pe;
    queries = queries + self_attn(q, q, queries);
  }
  queries = norm1(queries);

  auto q = queries + query_pe;
  auto k = keys + key_pe;
  queries = norm2(queries + cross_attn_token_to_image(q, k, keys));

  queries = norm3(queries + mlp(queries));

  q = queries + query_pe;
  k = keys + key_pe;
  keys = norm4(keys + cross_attn_image_to_token(k, q, queries));
  return {queries, keys};
}

TwoWayTransformer3DImpl::TwoWayTransformer3DImpl(int64_t depth, int64_t dim, int64_t heads,
                                                 int64_t mlp_dim, int64_t downsample_rate) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i)
    layers->push_back(TwoWayAttentionBlock3D(dim, heads, mlp_dim, downsample_rate, i == 0));
  final_attn_token_to_image = register_module("final_attn_token_to_image",
                                              TokenAttention(dim, heads, downsample_rate));
  norm_final_attn = register_module("norm_final_attn", layer_norm(dim));
}

std::pair<torch::Tensor, torch::Tensor> TwoWayTransformer3DImpl::forward(
    const torch::Tensor& image_embedding, const torch::Tensor& image_pe,
    const torch::Tensor& point_embedding) {
  auto keys = image_embedding.flatten(2).permute({0, 2, 1});
  auto key_pe = image_pe.flatten(2).permute({0, 2, 1});
  auto queries = point_embedding;
  for (size_t i = 0; i < layers->size(); ++i)
    std::tie(queries, keys) = layers->ptr<TwoWayAttentionBlock3DImpl>(i)->forward(
        queries, keys, point_embedding, key_pe);
  auto q = queries + point_embedding;
  auto k = keys + key_pe;
  queries = norm_final_attn(queries + final_attn_token_to_image(q, k, keys));
  return {queries, keys};
}

DecoderMLPImpl::DecoderMLPImpl(int64_t input_dim, int64_t hidden_dim, int64_t output_dim,
                               int64_t num_layers) {
  if (num_layers < 1) throw Error("mask decoder: an MLP needs at least one layer");
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i)
    layers->push_back(torch::nn::Linear(i == 0 ? input_dim : hidden_dim,
                                        i == num_layers - 1 ? output_dim : hidden_dim));
}

torch::Tensor DecoderMLPImpl::forward(torch::Tensor x) {
  const size_t n = layers->size();
  for (size_t i = 0; i < n; ++i) {
    x = layers->ptr<torch::nn::LinearImpl>(i)->forward(x);
    if (i + 1 < n) x = torch::relu(x);
  }
  return x;
}

MaskDecoder3DImpl::MaskDecoder3DImpl(const MaskDecoderOptions& o) : options_(o) {
  const int64_t dim = o.transformer_dim;
  if (dim <= 0 || dim % 8 != 0)
    throw Error("mask decoder: transformer_dim " + std::to_string(dim) +
                " must be a positive multiple of 8 (upscaling to dim/4 and dim/8 channels)");
  if (o.num_multimask_outputs < 1 || o.transformer_depth < 1)
    throw Error("mask decoder: num_multimask_outputs and transformer_depth must be at least 1");
  const int64_t num_mask_tokens = o.num_multimask_outputs + 1;
  transformer = register_module(
      "transformer", TwoWayTransformer3D(o.transformer_depth, dim, o.transformer_num_heads,
                                         o.transformer_mlp_dim, o.attention_downsample_rate));
  iou_token = register_module("iou_token", torch::nn::Embedding(1, dim));
  mask_tokens = register_module("mask_tokens", torch::nn::Embedding(num_mask_tokens, dim));
  using torch::nn::ConvTranspose3dOptions;
  output_upscaling = register_module(
      "output_upscaling",
      torch::nn::Sequential(
          torch::nn::ConvTranspose3d(ConvTranspose3dOptions(dim, dim / 4, 2).stride(2)),
          LayerNorm3d(dim / 4), torch::nn::GELU(),
          torch::nn::ConvTranspose3d(ConvTranspose3dOptions(dim / 4, dim / 8, 2).stride(2)),
          torch::nn::GELU()));
  output_hypernetworks_mlps = register_module("output_hypernetworks_mlps", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_mask_tokens; ++i)
    output_hypernetworks_mlps->push_back(DecoderMLP(dim, dim, dim / 8, 3));
  iou_prediction_head = register_module(
      "iou_prediction_head",
      DecoderMLP(dim, o.iou_head_hidden_dim, num_mask_tokens, o.iou_head_depth));
}

MaskDecoderTrace MaskDecoder3DImpl::predict_masks(const torch::Tensor& src,
                                                  const torch::Tensor& image_pe,
                                                  const torch::Tensor& sparse) {
  const int64_t dim = options_.transformer_dim;
  if (sparse.dim() != 3 || sparse.size(2) != dim)
    throw Error("mask decoder: sparse prompt embeddings must be B×N×" + std::to_string(dim) +
                ", got " + shape_str(sparse.sizes()));
  const int64_t B = sparse.size(0);
  if (src.dim() != 5 || src.size(0) != B || src.size(1) != dim)
    throw Error("mask decoder: image embedding must be [B, C, g, g, g] with B = " +
                std::to_string(B) + " (one per prompt) and C = " + std::to_string(dim) +
                ", got " + shape_str(src.sizes()));
  if (image_pe.dim() != 5 || (image_pe.size(0) != 1 && image_pe.size(0) != B) ||
      !image_pe.sizes().slice(1).equals(src.sizes().slice(1)))
    throw Error("mask decoder: image PE must be [1 or B, C, g, g, g] matching the image " +
                shape_str(src.sizes()) + ", got " + shape_str(image_pe.sizes()));
  const auto dtype = iou_token->weight.scalar_type();
  auto output_tokens = torch::cat({iou_token->weight, mask_tokens->weight}, 0);
  auto tokens =
      torch::cat({output_tokens.unsqueeze(0).expand({B, -1, -1}), sparse.to(dtype)}, 1);
  auto pos_src = image_pe.to(dtype).expand({B, -1, -1, -1, -1});

  MaskDecoderTrace t;
  std::tie(t.queries, t.keys) = transformer(src, pos_src, tokens);
  const int64_t M = mask_tokens->weight.size(0);
  auto iou_token_out = t.queries.select(1, 0);

  auto upscaled = output_upscaling->forward(t.keys.transpose(1, 2).reshape(src.sizes()));
  std::vector<torch::Tensor> hyper_in;
  for (int64_t i = 0; i < M; ++i)
    hyper_in.push_back(
        output_hypernetworks_mlps->ptr<DecoderMLPImpl>(i)->forward(t.queries.select(1, 1 + i)));
  const auto us = upscaled.sizes();
  t.masks = torch::matmul(torch::stack(hyper_in, 1), upscaled.flatten(2))
                .view({B, M, us[2], us[3], us[4]});
  t.iou_pred = iou_prediction_head(iou_token_out);
  return t;
}

MaskPrediction MaskDecoder3DImpl::select(const MaskDecoderTrace& t, bool multimask) const {
  if (multimask) return {t.masks.slice(1, 1), t.iou_pred.slice(1, 1)};
  return {t.masks.slice(1, 0, 1), t.iou_pred.slice(1, 0, 1)};
}

MaskPrediction MaskDecoder3DImpl::forward(const torch::Tensor& src, const torch::Tensor& image_pe,
                                          const torch::Tensor& sparse, bool multimask) {
  return select(predict_masks(src, image_pe, sparse), multimask);
}

MaskPrediction MaskDecoder3DImpl::forward(const torch::Tensor& image_embeddings,
                                          const torch::Tensor& image_pe,
                                          const torch::Tensor& sparse, const torch::Tensor& dense,
                                          bool multimask, MaskEnhancedAdapter& adapter) {
  if (sparse.dim() != 3)
    throw Error("mask decoder: sparse prompt embeddings must be B×N×C, got " +
                shape_str(sparse.sizes()));
  const int64_t B = sparse.size(0);
  auto image = image_embeddings;
  if (image.dim() == 5 && image.size(0) != B) {
    if (image.size(0) != 1)
      throw Error("mask decoder: image batch " + std::to_string(image.size(0)) +
                  " does not match prompt batch " + std::to_string(B));
    image = torch::repeat_interleave(image, B, 0);
  }
  auto src = adapter->forward(image, dense.to(image.scalar_type()));
  return forward(src, image_pe, sparse, multimask);
}

}  // namespace msam::model
