// PromptEncoder3D against prompt_encoder.safetensors (parity README items 3-7).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/model/prompt_encoder.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

constexpr test::Tol kExact{0, 0};

model::PromptEncoder3D load_prompt_encoder(torch::Dtype dtype) {
  const auto& f = test::parity_fixture("prompt_encoder.safetensors");
  model::PromptEncoder3D pe(model::PromptEncoderOptions{});
  pe->to(test::device(), dtype);
  model::load_state_dict(*pe, f.tensors, "prompt_encoder.", /*strict=*/true, {}, f.source);
  pe->eval();
  return pe;
}

// `point_tol` covers outputs through the float32 point PE, `tol` the rest.
void check_prompt_encoder(torch::Dtype dtype, test::Tol tol, test::Tol point_tol) {
  torch::NoGradGuard no_grad;
  const auto& f = test::parity_fixture("prompt_encoder.safetensors");
  auto pe = load_prompt_encoder(dtype);
  auto out = pe->forward(test::on_device(f.at("input.points")), test::on_device(f.at("input.labels")),
                        test::on_device(f.at("input.masks")));
  if (!test::bf16_autocast()) {
    EXPECT_EQ(out.sparse.scalar_type(), dtype);
  }
  MSAM_EXPECT_CLOSE(out.sparse, f.at("output.sparse_embeddings"), point_tol);
  MSAM_EXPECT_CLOSE(out.dense, f.at("output.dense_embeddings"), tol);
  MSAM_EXPECT_CLOSE(pe->get_dense_pe(), f.at("output.dense_pe"), point_tol);

  auto no_mask = pe->forward(test::on_device(f.at("input.points")), test::on_device(f.at("input.labels")));
  ASSERT_EQ(no_mask.dense.sizes(), out.dense.sizes());
  MSAM_EXPECT_CLOSE(no_mask.dense.select(4, 0).select(3, 0).select(2, 0),
                    f.at("output.no_mask_dense_embedding"), tol);
  // The no-mask embedding is spatially constant.
  EXPECT_TRUE(torch::equal(no_mask.dense, no_mask.dense.select(4, 0)
                                              .select(3, 0)
                                              .select(2, 0)
                                              .view({2, -1, 1, 1, 1})
                                              .expand_as(no_mask.dense)));
  MSAM_EXPECT_CLOSE(no_mask.sparse, out.sparse, kExact);
}

}  // namespace

TEST(PromptEncoderParity, Float32) {
  check_prompt_encoder(torch::kFloat, test::kModuleF32, test::kModuleF32);
}

TEST(PromptEncoderParity, Float64) {
  check_prompt_encoder(torch::kDouble, test::kF64, test::kF64PointPE);
}

TEST(PromptEncoderParity, FloatPointsMatchIntegerPoints) {
  torch::NoGradGuard no_grad;
  const auto& f = test::parity_fixture("prompt_encoder.safetensors");
  auto pe = load_prompt_encoder(torch::kFloat);
  auto from_float = pe->forward(test::on_device(f.at("input.points"), torch::kDouble),
                                test::on_device(f.at("input.labels")));
  MSAM_EXPECT_CLOSE(from_float.sparse, f.at("output.sparse_embeddings"), test::kModuleF32);
}
