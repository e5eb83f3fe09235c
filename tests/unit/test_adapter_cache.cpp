// The adapter's per-volume cache, a small-width model end to end, and input checks of the
// prompt encoder, adapter and decoder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/model/mask_decoder.h"
#include "msam/model/mask_enhanced_adapter.h"
#include "msam/model/prompt_encoder.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

constexpr int64_t kWidth = 96;
constexpr test::Tol kExact{0, 0};
constexpr test::Tol kRoundoff{1e-5, 1e-5};  // same maths, different batch shapes

// Default initialisation leaves rel-pos tables at zero and norms at 1/0; random values make
// sure the cache has something to get wrong.
void randomise(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.copy_(torch::randn_like(p) * 0.2 + (p.dim() == 1 ? 0.5 : 0));
}

model::MaskEnhancedAdapter small_adapter(int64_t blocks) {
  model::MaskEnhancedAdapterOptions o;
  o.width = kWidth;
  o.num_heads = 2;
  o.num_blocks = blocks;
  model::MaskEnhancedAdapter mea(o);
  randomise(*mea);
  mea->eval();
  return mea;
}

}  // namespace

TEST(AdapterCache, CachedImageSideMatchesUncached) {
  torch::manual_seed(1);
  torch::NoGradGuard no_grad;
  auto mea = small_adapter(2);  // block 1 recomputes its image stream from block 0's output
  auto image = torch::randn({1, kWidth, 8, 8, 8});
  auto side = mea->precompute(image);
  for (int k = 0; k < 3; ++k) {
    auto prompt = torch::randn({1, kWidth, 8, 8, 8});
    auto cached = mea->forward(side, prompt);
    auto direct = mea->forward(image, prompt);
    ASSERT_EQ(cached.sizes(), (std::vector<int64_t>{1, kWidth, 8, 8, 8}));
    MSAM_EXPECT_CLOSE(cached, direct, kExact);
  }
}

TEST(AdapterCache, SharedImageSideMatchesRepeatedImage) {
  torch::manual_seed(2);
  torch::NoGradGuard no_grad;
  auto mea = small_adapter(1);
  auto image = torch::randn({1, kWidth, 8, 8, 8});
  auto prompts = torch::randn({3, kWidth, 8, 8, 8});
  auto shared = mea->forward(mea->precompute(image), prompts);
  auto repeated = mea->forward(image.repeat({3, 1, 1, 1, 1}), prompts);
  MSAM_EXPECT_CLOSE(shared, repeated, kRoundoff);
}

TEST(SmallModel, RunsEndToEndWithExpectedShapes) {
  torch::manual_seed(3);
  torch::NoGradGuard no_grad;
  model::PromptEncoderOptions po;
  po.embed_dim = kWidth;
  model::PromptEncoder3D prompt_encoder(po);
  model::MaskDecoderOptions dopt;
  dopt.transformer_dim = kWidth;
  dopt.transformer_mlp_dim = 128;
  model::MaskDecoder3D decoder(dopt);
  auto mea = small_adapter(1);
  prompt_encoder->eval();
  decoder->eval();

  auto image = torch::randn({1, kWidth, 8, 8, 8});
  auto points = torch::tensor({70, 40, 88, 12, 100, 64}, torch::kLong).view({2, 1, 3});
  auto labels = torch::tensor({1, 0}, torch::kLong).view({2, 1});
  auto prompts = prompt_encoder->forward(points, labels, torch::zeros({2, 1, 32, 32, 32}));
  EXPECT_EQ(prompts.sparse.sizes(), (std::vector<int64_t>{2, 2, kWidth}));
  EXPECT_EQ(prompts.dense.sizes(), (std::vector<int64_t>{2, kWidth, 8, 8, 8}));
  auto image_pe = prompt_encoder->get_dense_pe();
  EXPECT_EQ(image_pe.sizes(), (std::vector<int64_t>{1, kWidth, 8, 8, 8}));

  // One image shared by two prompts: repeated before the adapter, as the reference does.
  auto single = decoder->forward(image, image_pe, prompts.sparse, prompts.dense, false, mea);
  EXPECT_EQ(single.low_res_masks.sizes(), (std::vector<int64_t>{2, 1, 32, 32, 32}));
  EXPECT_EQ(single.iou_pred.sizes(), (std::vector<int64_t>{2, 1}));
  auto multi = decoder->forward(image, image_pe, prompts.sparse, prompts.dense, true, mea);
  EXPECT_EQ(multi.low_res_masks.sizes(), (std::vector<int64_t>{2, 3, 32, 32, 32}));
  EXPECT_EQ(multi.iou_pred.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(torch::isfinite(multi.low_res_masks).all().item<bool>());

  // The cached adapter path gives the decoder the same src.
  auto src = mea->forward(mea->precompute(image), prompts.dense);
  auto cached = decoder->forward(src, image_pe, prompts.sparse, false);
  MSAM_EXPECT_CLOSE(cached.low_res_masks, single.low_res_masks, kRoundoff);

  // Different prompts give different masks.
  EXPECT_FALSE(torch::allclose(single.low_res_masks[0], single.low_res_masks[1]));
}

// A click split where a session splits it (the mask prompt's adapter pass ahead, the clicks'
// decoder later) is the click, bit for bit; a mask prompt of another batch is an error.
TEST(SmallModel, AdaptThenDecodeIsTheClick) {
  torch::NoGradGuard no_grad;
  auto net = test::tiny_model(5);
  auto ctx = net->encode(torch::randn({2, 1, 64, 64, 64}));
  auto points = torch::tensor({{{10, 20, 30}, {40, 12, 33}}, {{5, 6, 7}, {50, 40, 30}}});
  auto labels = torch::tensor({{1, 0}, {1, 1}});
  auto previous = torch::randn({2, 1, 32, 32, 32});
  auto whole = net->click_eager(ctx, points, labels, previous);
  auto split = net->decode(ctx, net->adapt(ctx, previous), points, labels);
  EXPECT_TRUE(torch::equal(whole.low_res_masks, split.low_res_masks));
  EXPECT_TRUE(torch::equal(whole.iou_pred, split.iou_pred));
  EXPECT_THROW(net->decode(ctx, net->adapt(ctx, previous), points.slice(0, 0, 1),
                           labels.slice(0, 0, 1)),
               Error);
}

TEST(ModelInputChecks, BadPromptsAreErrors) {
  model::PromptEncoderOptions po;
  po.embed_dim = kWidth;
  model::PromptEncoder3D pe(po);
  auto points = torch::zeros({1, 2, 3}, torch::kLong);
  EXPECT_THROW(pe->forward(points, torch::tensor({{1, 2}})), Error);             // label 2
  EXPECT_THROW(pe->forward(points, torch::tensor({{1}})), Error);                // N mismatch
  EXPECT_THROW(pe->forward(torch::zeros({1, 2, 2}), torch::tensor({{1, 0}})), Error);
  EXPECT_THROW(pe->forward(points, torch::tensor({{1, 0}}), torch::zeros({1, 1, 16, 16, 16})),
               Error);  // mask not 32³
  EXPECT_THROW((model::PromptEncoder3D(model::PromptEncoderOptions{100, 8, 128, 16})), Error);
}

TEST(ModelInputChecks, BadAdapterAndDecoderInputsAreErrors) {
  auto mea = small_adapter(1);
  auto image = torch::randn({2, kWidth, 8, 8, 8});
  EXPECT_THROW(mea->forward(image, torch::randn({2, kWidth + 1, 8, 8, 8})), Error);
  EXPECT_THROW(mea->forward(image, torch::randn({3, kWidth, 8, 8, 8})), Error);  // batch
  EXPECT_THROW((model::MaskEnhancedAdapter(model::MaskEnhancedAdapterOptions{96, 5, 8, 1})),
               Error);

  model::MaskDecoderOptions dopt;
  dopt.transformer_dim = kWidth;
  dopt.transformer_mlp_dim = 64;
  model::MaskDecoder3D decoder(dopt);
  auto pe = torch::randn({1, kWidth, 8, 8, 8});
  auto sparse = torch::randn({3, 2, kWidth});
  auto dense = torch::randn({3, kWidth, 8, 8, 8});
  // Two images for three prompts: only a single image is repeated.
  EXPECT_THROW(decoder->forward(image, pe, sparse, dense, false, mea), Error);
  EXPECT_THROW(decoder->forward(image, pe, torch::randn({2, 2, kWidth + 1}), false), Error);
}

TEST(ModelInputChecks, StrictLoadNamesMissingAdapterKeys) {
  auto mea = small_adapter(1);
  auto weights = model::state_dict(*mea, "adapter.");
  EXPECT_NO_THROW(model::load_state_dict(*mea, weights, "adapter.", true));
  weights.erase("adapter.add_norm4.weight");
  try {
    model::load_state_dict(*mea, weights, "adapter.", true, {}, "mea.safetensors");
    FAIL() << "strict load accepted a missing key";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter.add_norm4.weight"), std::string::npos);
  }
}
