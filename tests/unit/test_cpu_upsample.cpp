// The CPU's three-pass trilinear upsampling against ATen's kernel: same indices, weights and
// order of sums, so the same values to float rounding, for the model's 32³ → 128³ and for odd,
// non-cubic sizes (down as well as up); with autograd it is ATen's op.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "msam/common/cpu_upsample.h"

using namespace msam;

TEST(CpuUpsample, MatchesATenTrilinear) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(2);
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {
      {{1, 1, 32, 32, 32}, {128, 128, 128}},
      {{2, 3, 5, 7, 4}, {13, 7, 9}},
      {{1, 2, 9, 6, 11}, {4, 3, 5}}};
  for (const auto& [in, out] : cases) {
    const auto x = torch::randn(in) * 10;
    const auto ours = cpu::upsample_trilinear(x, out);
    const auto aten = at::upsample_trilinear3d(x, out, false);
    ASSERT_EQ(ours.sizes(), aten.sizes());
    EXPECT_LE((ours - aten).abs().max().item<float>(), 1e-5) << x.sizes();
  }
  // A non-contiguous input gives the same.
  const auto x = torch::randn({1, 1, 8, 9, 10}).transpose(2, 4);
  EXPECT_TRUE(torch::allclose(cpu::upsample_trilinear(x, {20, 18, 16}),
                              at::upsample_trilinear3d(x, {20, 18, 16}, false), 1e-6, 1e-6));
}

TEST(CpuUpsample, GradientsFlowThroughATen) {
  const auto x = torch::randn({1, 1, 4, 4, 4}, torch::requires_grad());
  cpu::upsample_trilinear(x, {8, 8, 8}).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  // Each input voxel's weights over the outputs sum to 8 (2³ outputs per input on average).
  EXPECT_NEAR(x.grad().sum().item<double>(), 512.0, 1e-3);
}
