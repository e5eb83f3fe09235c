// The Mask-Enhanced Adapter against mea.safetensors (parity README items 0, 8-10).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/model/mask_enhanced_adapter.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

void check_adapter(torch::Dtype dtype, test::Tol tol) {
  torch::NoGradGuard no_grad;
  const auto& f = test::parity_fixture("mea.safetensors");
  model::MaskEnhancedAdapter mea(model::MaskEnhancedAdapterOptions{});
  mea->to(test::device(), dtype);
  // Strict: add_norm4 is a real (unused) parameter, so every stored key loads.
  model::load_state_dict(*mea, f.tensors, "adapter.", /*strict=*/true, {}, f.source);
  mea->eval();
  auto image = test::on_device(f.at("input.image_embedding"), dtype);
  auto prompt = test::on_device(f.at("input.prompt_embedding"), dtype);
  auto trace = mea->forward_trace(mea->precompute(image), prompt);
  ASSERT_EQ(trace.block_image.size(), 1u);
  MSAM_EXPECT_CLOSE(trace.block_image[0], f.at("output.block0_image"), tol);
  MSAM_EXPECT_CLOSE(trace.block_prompt[0], f.at("output.block0_prompt"), tol);
  MSAM_EXPECT_CLOSE(trace.output, f.at("output.mea"), tol);
}

}  // namespace

TEST(MaskEnhancedAdapterParity, Float32) { check_adapter(torch::kFloat, test::kModuleF32); }

TEST(MaskEnhancedAdapterParity, Float64) { check_adapter(torch::kDouble, test::kF64); }
