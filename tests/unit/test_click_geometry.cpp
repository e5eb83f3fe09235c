// Where a click lands: the voxel the click sampler picks, the point encoding the prompt
// encoder gives it and the dense PE of the embedding cell containing that voxel must agree.
// The model parity fixtures pin each module, not this glue between them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/interaction/click_sampler.h"
#include "msam/interaction/refinement.h"
#include "msam/io/safetensors.h"
#include "msam/model/msam.h"
#include "msam/model/prompt_encoder.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

constexpr test::Tol kPe{1e-5, 1e-5};
constexpr test::Tol kSame{1e-6, 1e-6};  // the same computation repeated

// Patch 3 (12 voxels over a 4-cell grid): the centre of voxel 3i+1 is the centre of cell i,
// so a click there has exactly its cell's encoding.
model::PromptEncoder3D odd_patch_encoder(model::DensePeAxes axes) {
  model::PromptEncoderOptions o;
  o.embed_dim = 96;
  o.image_embedding_size = 4;
  o.input_image_size = 12;
  o.dense_pe_axes = axes;
  return model::PromptEncoder3D(o);
}

// The positional part of the sparse token of the one foreground click in `target`, as the
// training and evaluation loop computes it: sampler → prompt encoder.
torch::Tensor click_encoding(model::PromptEncoder3D& pe, const torch::Tensor& target) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(1);
  const auto click = interaction::sample_clicks(torch::zeros_like(target), target,
                                          interaction::ClickProtocol::kRandom, gen);
  const auto sparse = pe->forward(click.points, click.labels).sparse;
  return sparse[0][0] - pe->point_embeddings->ptr<torch::nn::EmbeddingImpl>(1)->weight[0];
}

// The demo's model with the given axes.
model::MSAMConfig demo_model(model::DensePeAxes axes) {
  auto c = model::tiny_cpu_config();
  c.dense_pe_axes = axes;
  return c;
}

torch::Tensor one_voxel(int64_t d, int64_t h, int64_t w) {
  auto t = torch::zeros({1, 1, 12, 12, 12});
  t[0][0][d][h][w] = 1;
  return t;
}

}  // namespace

TEST(ClickGeometry, SampledClickHasTheEncodingOfItsCellUnlessReferenceAxes) {
  // Cell (2, 0, 3): d ≠ h, so the two axis choices give different cells. The reference's slip,
  // kept for pretrained weights: the click at (d, h, w) shares the encoding of cell (h, d, w).
  struct Case {
    model::DensePeAxes axes;
    std::array<int64_t, 3> cell, other;
  };
  for (const auto& c : {Case{model::DensePeAxes::kAligned, {2, 0, 3}, {0, 2, 3}},
                        Case{model::DensePeAxes::kReference, {0, 2, 3}, {2, 0, 3}}}) {
    SCOPED_TRACE(model::dense_pe_axes_name(c.axes));
    torch::manual_seed(4);
    torch::NoGradGuard no_grad;
    auto pe = odd_patch_encoder(c.axes);
    const auto dense = pe->get_dense_pe()[0];
    const auto at = [&](const std::array<int64_t, 3>& i) {
      return dense.select(1, i[0]).select(1, i[1]).select(1, i[2]);
    };
    const auto got = click_encoding(pe, one_voxel(7, 1, 10));
    MSAM_EXPECT_CLOSE(got, at(c.cell), kPe);
    EXPECT_FALSE(torch::allclose(got, at(c.other), 1e-3, 1e-3));
  }
}

TEST(ClickGeometry, ModelConfigRecordsTheAxes) {
  model::MSAMConfig c;
  c.dense_pe_axes = model::DensePeAxes::kAligned;
  EXPECT_EQ(model::MSAMConfig::from_json(c.to_json(), "t").dense_pe_axes,
            model::DensePeAxes::kAligned);
  // Checkpoints of the earlier flat layout without the key were trained with the reference
  // axes (Architecture.TheEarlierFlatLayoutStillLoads); the current layout must name them.
  auto j = nlohmann::json::parse(c.to_json());
  j.erase("dense_pe_axes");
  EXPECT_THROW(model::MSAMConfig::from_json(j.dump(), "t"), Error);
  j["dense_pe_axes"] = "swapped";
  EXPECT_THROW(model::MSAMConfig::from_json(j.dump(), "t"), Error);
}

TEST(ClickGeometry, WeightsTrainedWithOtherAxesAreRejected) {
  auto c = demo_model(model::DensePeAxes::kAligned);
  model::MSAM trained(c);
  const auto path =
      (std::filesystem::temp_directory_path() / "msam_click_geometry.safetensors").string();
  io::write_safetensors(path, model::state_dict(*trained), {{"model_config", c.to_json()}});

  model::MSAM same(c);
  EXPECT_NO_THROW(model::load_weights(same, path, model::WeightsPolicy::kExact));
  c.dense_pe_axes = model::DensePeAxes::kReference;
  model::MSAM other(c);
  EXPECT_THROW(model::load_weights(other, path, model::WeightsPolicy::kExact), Error);
  std::filesystem::remove(path);
}

TEST(RefinementLoop, FeedsBackThePreviousLowResLogitsAndClicksTheTargetGrid) {
  torch::manual_seed(5);
  torch::NoGradGuard no_grad;
  model::MSAM net(demo_model(model::DensePeAxes::kAligned));
  net->eval();
  auto ctx = net->encode(torch::randn({1, 1, 64, 64, 64}));
  auto target = torch::zeros({1, 1, 64, 64, 64});
  target.slice(2, 20, 40).slice(3, 5, 15).slice(4, 30, 50).fill_(1);
  interaction::RefinementOptions ro;
  ro.iterations = 3;
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(2);
  auto prompt = torch::zeros({1, 1, 32, 32, 32});
  interaction::run_refinement(net, ctx, ro, interaction::simulated_clicks(target, ro, gen),
                              [&](const interaction::IterationResult& it) {
    ASSERT_EQ(it.low_res.sizes(), (std::vector<int64_t>{1, 1, 32, 32, 32}));
    ASSERT_EQ(it.logits.sizes(), target.sizes());
    const auto p = it.click.points[0][0];
    const int64_t d = p[0].item<int64_t>(), h = p[1].item<int64_t>(), w = p[2].item<int64_t>();
    if (it.index == 0) {  // the first click lies in the target, in (d, h, w) order
      EXPECT_EQ(target[0][0][d][h][w].item<float>(), 1.0f);
    }
    // This iteration's mask prompt was the previous iteration's low-res logits.
    const auto again = net->click(ctx, it.click.points, it.click.labels, prompt);
    MSAM_EXPECT_CLOSE(again.low_res_masks, it.low_res, kSame);
    MSAM_EXPECT_CLOSE(net->upsample(it.low_res), it.logits, kSame);
    prompt = it.low_res;
  });
}

TEST(Mirroring, OneViewIsTheModelAndEightViewsCommuteWithAMirror) {
  torch::manual_seed(6);
  torch::NoGradGuard no_grad;
  model::MSAM net(demo_model(model::DensePeAxes::kAligned));
  net->eval();
  const auto image = torch::randn({1, 1, 64, 64, 64});
  const interaction::Clicks clicks{torch::tensor({10, 20, 30, 40, 50, 5}, torch::kLong).view({1, 2, 3}),
                                   torch::tensor({1, 0}, torch::kLong).view({1, 2})};
  const auto prompt = torch::randn({1, 1, 32, 32, 32});
  const auto plain = net->click(net->encode(image), clicks.points, clicks.labels, prompt).low_res_masks;
  const auto one = interaction::encode_views(net, image, false);
  ASSERT_EQ(one.size(), 1u);
  MSAM_EXPECT_CLOSE(interaction::click_views(net, one, clicks, prompt), plain, kSame);
  // Eight views: the volume, its clicks and its previous mask mirrored along y give the
  // mirror image of the mean (the same eight views, taken in another order).
  const auto eight = interaction::encode_views(net, image, true);
  ASSERT_EQ(eight.size(), 8u);
  const auto mean = interaction::click_views(net, eight, clicks, prompt);
  auto points = clicks.points.clone();
  points.select(2, 1).copy_(63 - clicks.points.select(2, 1));
  const auto mirrored = interaction::click_views(net, interaction::encode_views(net, image.flip({3}), true),
                                                 {points, clicks.labels}, prompt.flip({3}));
  MSAM_EXPECT_CLOSE(mirrored, mean.flip({3}), kPe);
  // A random model is no mirror-symmetric function: the mean differs from one view.
  EXPECT_FALSE(torch::allclose(mean, plain, 1e-3, 1e-3));
}
