// Fixture e: the full interaction loop (prompt encoder → adapter → decoder → upsampling, the
// raw low-res logits fed back) with fixed clicks, through the assembled MSAM model and its
// per-volume cache; and the same numbers from the reference-format .pth checkpoints.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/model/msam.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

model::MSAMConfig small_config(int64_t lora_rank) {
  model::MSAMConfig c;
  c.encoder.embed_dim = 96;
  c.encoder.depth = 3;
  c.encoder.num_heads = 4;
  c.encoder.global_attn_indexes = {2};
  c.encoder.lora_rank = lora_rank;
  return c;
}

void check_loop(model::MSAM& net, torch::ScalarType dtype, const test::Tol& tol,
                const test::Tol& loop_tol, bool from_image) {
  torch::NoGradGuard no_grad;
  net->to(test::device(), dtype);
  net->eval();
  const auto& enc = test::parity_fixture("image_encoder_small.safetensors");
  const auto& fx = test::parity_fixture("msam_click_loop.safetensors");
  auto ctx = from_image ? net->encode(test::on_device(enc.at("input.image"), dtype))
                        : net->context(test::on_device(enc.at("output.image_embedding"), dtype));
  auto low = torch::zeros({1, 1, 32, 32, 32}, torch::dtype(dtype).device(test::device()));
  torch::Tensor up;
  for (int k = 0; k < 3; ++k) {
    const auto pre = "output.click" + std::to_string(k) + ".";
    auto points = test::on_device(fx.at("input.clicks")[k]);
    auto labels = test::on_device(fx.at("input.click_labels")[k]);
    auto prompts = net->prompt_encoder(points, labels, low);
    MSAM_EXPECT_CLOSE(prompts.sparse, fx.at(pre + "sparse_embeddings"), tol);
    auto pred = net->click(ctx, points, labels, low);
    // Click 0 sees only fixed inputs; later clicks see fed-back logits, which amplify
    // rounding differences (docs/design.md §9: the click-loop tolerance).
    const auto& t = k == 0 ? tol : loop_tol;
    MSAM_EXPECT_CLOSE(pred.low_res_masks, fx.at(pre + "low_res_masks"), t) << "click " << k;
    MSAM_EXPECT_CLOSE(pred.iou_pred, fx.at(pre + "iou_pred"), t) << "click " << k;
    low = pred.low_res_masks;
    up = net->upsample(low);
  }
  MSAM_EXPECT_CLOSE(up, fx.at("output.final_masks_128"), loop_tol);
}

}  // namespace

TEST(ClickLoopParity, Float32FromImageEmbedding) {
  model::MSAM net(small_config(0));
  model::load_weights(net, test::module_fixture_weights(), model::WeightsPolicy::kExact,
                      "fixtures");
  check_loop(net, torch::kFloat, test::kModuleF32, test::kClickLoopF32, false);
}

TEST(ClickLoopParity, Float64FromImage) {
  model::MSAM net(small_config(0));
  model::load_weights(net, test::module_fixture_weights(), model::WeightsPolicy::kExact,
                      "fixtures");
  check_loop(net, torch::kDouble, test::kF64PointPE, test::Tol{1e-5, 1e-5}, true);
}

TEST(ClickLoopParity, SamMed3dCheckpointPlusAdapterReproducesLoop) {
  // A SAM-Med3D-layout .pth has no adapter: it initialises everything else, the adapter
  // weights come from the MEA fixture.
  model::MSAM net(small_config(0));
  auto summary = model::load_weights(net, test::checkpoint_path("sam_med3d_format.pth"),
                                     model::WeightsPolicy::kInitFrom);
  EXPECT_NE(summary.find("keep their initialisation"), std::string::npos) << summary;
  model::load_state_dict(*net->adapter, test::parity_fixture("mea.safetensors").tensors,
                         "adapter.", true);
  check_loop(net, torch::kFloat, test::kModuleF32, test::kClickLoopF32, true);
}

TEST(ClickLoopParity, MsamCheckpointLoadsForInferenceWithLora) {
  std::string summary;
  auto net = model::load_for_inference(test::checkpoint_path("msam_format.pth"), &summary);
  EXPECT_EQ(net->config().encoder.lora_rank, 4);
  EXPECT_EQ(net->config().encoder.embed_dim, 96);
  EXPECT_EQ(net->config().encoder.global_attn_indexes, std::vector<int64_t>{2});
  torch::NoGradGuard no_grad;
  net->to(test::device());
  auto emb = net->image_encoder(test::on_device(
      test::parity_fixture("image_encoder_small.safetensors").at("input.image"), torch::kFloat));
  MSAM_EXPECT_CLOSE(emb, test::parity_fixture("lora_qkv.safetensors").at("output.image_embedding"),
                    test::kModuleF32);
}
