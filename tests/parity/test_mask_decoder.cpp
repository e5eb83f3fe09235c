// new_MaskDecoder3D with the MEA adapter against mask_decoder.safetensors (docs/design.md §2.6).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/model/mask_decoder.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

constexpr test::Tol kExact{0, 0};

void check_decoder(torch::Dtype dtype, test::Tol tol) {
  torch::NoGradGuard no_grad;
  const auto& f = test::parity_fixture("mask_decoder.safetensors");
  const auto& adapter_weights = test::parity_fixture("mea.safetensors");
  model::MaskDecoder3D decoder(model::MaskDecoderOptions{});
  model::MaskEnhancedAdapter mea(model::MaskEnhancedAdapterOptions{});
  decoder->to(test::device(), dtype);
  mea->to(test::device(), dtype);
  model::load_state_dict(*decoder, f.tensors, "mask_decoder.", true, {}, f.source);
  model::load_state_dict(*mea, adapter_weights.tensors, "adapter.", true, {},
                         adapter_weights.source);
  decoder->eval();
  mea->eval();

  auto image = test::on_device(f.at("input.image_embeddings"), dtype);
  const auto image_pe = test::on_device(f.at("input.image_pe"));
  const auto sparse = test::on_device(f.at("input.sparse_prompt_embeddings"));
  const auto dense = test::on_device(f.at("input.dense_prompt_embeddings"));

  auto src = mea->forward(image, dense.to(dtype));
  MSAM_EXPECT_CLOSE(src, f.at("output.adapter_src"), tol);
  auto trace = decoder->predict_masks(src, image_pe, sparse);
  MSAM_EXPECT_CLOSE(trace.queries, f.at("output.transformer_queries"), tol);
  MSAM_EXPECT_CLOSE(trace.keys, f.at("output.transformer_keys"), tol);

  auto single = decoder->select(trace, false);
  MSAM_EXPECT_CLOSE(single.low_res_masks, f.at("output.low_res_masks"), tol);
  MSAM_EXPECT_CLOSE(single.iou_pred, f.at("output.iou_pred"), tol);
  auto multi = decoder->select(trace, true);
  MSAM_EXPECT_CLOSE(multi.low_res_masks, f.at("output.low_res_masks_multimask"), tol);
  MSAM_EXPECT_CLOSE(multi.iou_pred, f.at("output.iou_pred_multimask"), tol);

  // The reference-shaped call (adapter inside the decoder) gives the same answer.
  auto call = decoder->forward(image, image_pe, sparse, dense, true, mea);
  MSAM_EXPECT_CLOSE(call.low_res_masks, multi.low_res_masks, kExact);
  MSAM_EXPECT_CLOSE(call.iou_pred, multi.iou_pred, kExact);
}

}  // namespace

TEST(MaskDecoderParity, Float32) { check_decoder(torch::kFloat, test::kModuleF32); }

TEST(MaskDecoderParity, Float64) { check_decoder(torch::kDouble, test::kF64); }
