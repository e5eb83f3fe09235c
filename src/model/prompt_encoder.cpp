#include "msam/model/prompt_encoder.h"

#include <torch/torch.h>

#include <cmath>

#include "msam/common/error.h"
#include "msam/common/shape.h"
#include "msam/model/layers.h"

namespace msam::model {

PositionEmbeddingRandom3DImpl::PositionEmbeddingRandom3DImpl(int64_t num_pos_feats) {
  positional_encoding_gaussian_matrix = register_buffer(
      "positional_encoding_gaussian_matrix", torch::randn({3, num_pos_feats}));
}

torch::Tensor PositionEmbeddingRandom3DImpl::encode_normalized(const torch::Tensor& coords) {
  auto g = positional_encoding_gaussian_matrix.to(torch::kFloat);
  auto c = torch::matmul(2 * coords.to(torch::kFloat) - 1, g) * (2 * M_PI);
  // The reference concatenates [sin, cos, sin] (sin repeated, docs/design.md §4.6).
  return torch::cat({torch::sin(c), torch::cos(c), torch::sin(c)}, -1);
}

torch::Tensor PositionEmbeddingRandom3DImpl::forward(int64_t size, DensePeAxes axes) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(
      positional_encoding_gaussian_matrix.device());
  auto centres = (torch::arange(size, opts) + 0.5) / static_cast<double>(size);
  auto grid = torch::meshgrid({centres, centres, centres}, "ij");
  // The reference swaps the first two axes (its x_embed/y_embed naming): see DensePeAxes.
  auto coords = axes == DensePeAxes::kReference ? torch::stack({grid[1], grid[0], grid[2]}, -1)
                                                : torch::stack({grid[0], grid[1], grid[2]}, -1);
  return encode_normalized(coords).permute({3, 0, 1, 2});
}

PromptEncoder3DImpl::PromptEncoder3DImpl(const PromptEncoderOptions& o) : options_(o) {
  if (o.embed_dim <= 0 || o.embed_dim % 3 != 0)
    throw Error("prompt encoder: embed_dim " + std::to_string(o.embed_dim) +
                " must be a positive multiple of 3 (the PE is [sin, cos, sin])");
  if (o.mask_in_chans < 4 || o.mask_in_chans % 4 != 0)
    throw Error("prompt encoder: mask_in_chans " + std::to_string(o.mask_in_chans) +
                " must be a positive multiple of 4");
  if (o.image_embedding_size <= 0 || o.input_image_size <= 0)
    throw Error("prompt encoder: image sizes must be positive");
  const int64_t dim = o.embed_dim, c = o.mask_in_chans;
  pe_layer = register_module("pe_layer", PositionEmbeddingRandom3D(dim / 3));
  point_embeddings = register_module(
      "point_embeddings",
      torch::nn::ModuleList(torch::nn::Embedding(1, dim), torch::nn::Embedding(1, dim)));
  not_a_point_embed = register_module("not_a_point_embed", torch::nn::Embedding(1, dim));
  using torch::nn::Conv3dOptions;
  mask_downscaling = register_module(
      "mask_downscaling",
      torch::nn::Sequential(torch::nn::Conv3d(Conv3dOptions(1, c / 4, 2).stride(2)),
                            LayerNorm3d(c / 4), torch::nn::GELU(),
                            torch::nn::Conv3d(Conv3dOptions(c / 4, c, 2).stride(2)),
                            LayerNorm3d(c), torch::nn::GELU(),
                            torch::nn::Conv3d(Conv3dOptions(c, dim, 1))));
  no_mask_embed = register_module("no_mask_embed", torch::nn::Embedding(1, dim));
}

torch::Tensor PromptEncoder3DImpl::embed_points(const torch::Tensor& points,
                                                const torch::Tensor& labels) {
  const auto device = no_mask_embed->weight.device();
  auto coords = points.to(device);
  if (!coords.is_floating_point()) coords = coords.to(torch::kFloat);
  coords = coords + 0.5;  // voxel centre
  // Boxes are never passed, so the reference always appends the padding point (0,0,0), -1.
  coords = torch::cat({coords, torch::zeros({coords.size(0), 1, 3}, coords.options())}, 1);
  auto lab = torch::cat({labels.to(device, torch::kLong),
                         torch::full({labels.size(0), 1}, -1, labels.options().device(device)
                                                                  .dtype(torch::kLong))},
                        1)
                 .unsqueeze(-1);
  auto pe = pe_layer->encode_normalized(coords / static_cast<double>(options_.input_image_size));
  // As the reference: accumulated in float32 into the float32 PE (docs/design.md §4.6).
  auto embed = [](const torch::nn::EmbeddingImpl& e) { return e.weight.to(torch::kFloat); };
  pe = torch::where(lab == -1, torch::zeros_like(pe), pe);
  pe = pe + (lab == -1).to(torch::kFloat) * embed(*not_a_point_embed) +
       (lab == 0).to(torch::kFloat) * embed(*point_embeddings->ptr<torch::nn::EmbeddingImpl>(0)) +
       (lab == 1).to(torch::kFloat) * embed(*point_embeddings->ptr<torch::nn::EmbeddingImpl>(1));
  return pe;
}

torch::Tensor PromptEncoder3DImpl::sparse(const torch::Tensor& points, const torch::Tensor& labels) {
  if (points.dim() != 3 || points.size(2) != 3)
    throw Error("prompt encoder: points must be B×N×3 (d,h,w), got " + shape_str(points.sizes()));
  if (labels.dim() != 2 || labels.size(0) != points.size(0) || labels.size(1) != points.size(1))
    throw Error("prompt encoder: labels must be B×N = " +
                shape_str({points.size(0), points.size(1)}) + ", got " +
                shape_str(labels.sizes()));
  if (labels.is_floating_point())
    throw Error("prompt encoder: labels must be integers (1, 0 or -1)");
  // Checked where labels come from outside (the CPU); on a GPU they come from the click sampler,
  // and a check would wait for the GPU at every click (and cannot be graph-captured).
  if (labels.is_cpu() && labels.numel() > 0 && ((labels < -1) | (labels > 1)).any().item<bool>())
    throw Error("prompt encoder: labels must be 1 (foreground), 0 (background) or -1 (no point)");
  return embed_points(points, labels).to(no_mask_embed->weight.scalar_type());
}

torch::Tensor PromptEncoder3DImpl::dense(const torch::Tensor& mask) {
  const int64_t m = 4 * options_.image_embedding_size;
  if (mask.dim() != 5 || mask.size(1) != 1 || mask.size(2) != m || mask.size(3) != m ||
      mask.size(4) != m)
    throw Error("prompt encoder: mask must be [B, 1, " + std::to_string(m) + ", " +
                std::to_string(m) + ", " + std::to_string(m) + "], got " +
                shape_str(mask.sizes()));
  return mask_downscaling->forward(
      mask.to(no_mask_embed->weight.device(), no_mask_embed->weight.scalar_type()));
}

PromptEmbeddings PromptEncoder3DImpl::forward(const torch::Tensor& points,
                                              const torch::Tensor& labels,
                                              const std::optional<torch::Tensor>& mask) {
  PromptEmbeddings out;
  out.sparse = sparse(points, labels);
  const int64_t B = points.size(0), g = options_.image_embedding_size;
  if (mask) {
    if (mask->dim() != 5 || mask->size(0) != B)
      throw Error("prompt encoder: mask must be " + shape_str({B, 1, 4 * g, 4 * g, 4 * g}) +
                  ", got " + shape_str(mask->sizes()));
    out.dense = dense(*mask);
  } else {
    out.dense = no_mask_embed->weight.reshape({1, -1, 1, 1, 1}).expand({B, -1, g, g, g});
  }
  return out;
}

torch::Tensor PromptEncoder3DImpl::get_dense_pe() {
  return pe_layer->forward(options_.image_embedding_size, options_.dense_pe_axes)
      .unsqueeze(0)
      .to(no_mask_embed->weight.scalar_type());
}

}  // namespace msam::model
