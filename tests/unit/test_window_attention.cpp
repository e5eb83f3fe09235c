// The pad-key closed form of the reference's padded windowed attention against the literal
// padded computation, and the literal window partition for grids that need several windows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "msam/model/image_encoder.h"

using namespace msam;
using model::WindowPath;

namespace {

// Random weights of the kind trained checkpoints have: non-zero qkv bias (the pad tokens'
// q, k, v) and non-zero relative-position tables.
void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters()) {
    const auto& name = p.key();
    auto& t = p.value();
    if (name.find("rel_pos") != std::string::npos)
      t.normal_(0, 0.2);
    else if (name.find("bias") != std::string::npos)
      t.normal_(0, 0.5);
    else if (t.dim() == 2)
      t.normal_(0, 1.0 / std::sqrt(static_cast<double>(t.size(1))));
  }
}

model::ImageEncoderConfig small_config() {
  model::ImageEncoderConfig c;
  c.embed_dim = 16;
  c.num_heads = 2;
  return c;
}

double relative_max_error(const torch::Tensor& a, const torch::Tensor& ref) {
  return ((a - ref).abs().max() / ref.abs().max()).item<double>();
}

torch::Tensor block_attention(model::Block3DImpl& b, const torch::Tensor& x, WindowPath path) {
  b.window_path = path;
  return b.attention(x);
}

}  // namespace

TEST(WindowAttention, FastMatchesPaddedAtViTBWidth) {
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  model::Block3D block(model::ImageEncoderConfig{}, 14);  // 768 wide, 12 heads, window 14
  randomize(*block);
  auto x = torch::randn({1, 8, 8, 8, 768});
  auto padded = block_attention(*block, x, WindowPath::Padded);
  auto fast = block_attention(*block, x, WindowPath::Fast);
  EXPECT_LT(relative_max_error(fast, padded), 1e-5);
}

struct Variant {
  const char* name;
  bool rel_pos, qkv_bias;
  int64_t lora_rank;
};

class WindowAttentionVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(WindowAttentionVariants, FastMatchesPaddedInFloat64WithGradients) {
  const auto v = GetParam();
  torch::manual_seed(1);
  auto c = small_config();
  c.use_rel_pos = v.rel_pos;
  c.qkv_bias = v.qkv_bias;
  c.lora_rank = v.lora_rank;
  model::Block3D block(c, 7);  // a 5³ grid padded to 7³
  randomize(*block);
  block->to(torch::kDouble);
  auto x = torch::randn({2, 5, 5, 5, 16}, torch::kDouble).requires_grad_();
  auto weight = torch::randn({2, 5, 5, 5, 16}, torch::kDouble);
  // Output and the gradients of a random projection of it (LoRA training runs the fast path).
  auto run = [&](WindowPath path) {
    block->zero_grad();
    x.mutable_grad() = torch::Tensor();
    auto out = block_attention(*block, x, path);
    (out * weight).sum().backward();
    std::vector<torch::Tensor> r{out.detach(), x.grad().clone()};
    for (auto& p : block->parameters())
      if (p.grad().defined()) r.push_back(p.grad().clone());
    return r;
  };
  auto padded = run(WindowPath::Padded);
  auto fast = run(WindowPath::Fast);
  ASSERT_EQ(fast.size(), padded.size());
  for (size_t i = 0; i < fast.size(); ++i)
    EXPECT_LT(relative_max_error(fast[i], padded[i]), 1e-11) << "tensor " << i;
}

INSTANTIATE_TEST_SUITE_P(
    Configs, WindowAttentionVariants,
    ::testing::Values(Variant{"RelPosBias", true, true, 0}, Variant{"NoRelPos", false, true, 0},
                      Variant{"NoQkvBias", true, false, 0}, Variant{"Lora", true, true, 3}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(WindowAttention, SeveralWindowsAttendSeparately) {
  torch::manual_seed(2);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 8, 8, 8, 16}, torch::kDouble);
  auto box = [](const torch::Tensor& t, int64_t lo, int64_t hi) {
    return t.slice(1, lo, hi).slice(2, lo, hi).slice(3, lo, hi);
  };

  // Window 4 tiles the 8³ grid exactly: 8 independent windows, no padding.
  model::Block3D tiled(small_config(), 4);
  randomize(*tiled);
  tiled->to(torch::kDouble);
  auto out = tiled->attention(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  MSAM_EXPECT_CLOSE(box(out, 4, 8), tiled->attn(box(x, 4, 8)), test::kF64);
  MSAM_EXPECT_CLOSE(out.slice(1, 0, 4).slice(2, 4, 8).slice(3, 0, 4),
                    tiled->attn(x.slice(1, 0, 4).slice(2, 4, 8).slice(3, 0, 4)), test::kF64);

  // Window 6: the grid is padded to 12³; the first window is all real tokens, the last one
  // holds a 2³ corner padded to 6³, which is the pad-key case again.
  model::Block3D padded(small_config(), 6);
  randomize(*padded);
  padded->to(torch::kDouble);
  for (auto path : {WindowPath::Fast, WindowPath::Padded}) {
    out = block_attention(*padded, x, path);
    MSAM_EXPECT_CLOSE(box(out, 0, 6), padded->attn(box(x, 0, 6)), test::kF64);
    MSAM_EXPECT_CLOSE(box(out, 6, 8), padded->attn->forward_pad_key(box(x, 6, 8)), test::kF64);
  }
}

TEST(WindowAttention, PartitionRoundTrip) {
  auto x = torch::randn({2, 5, 7, 3, 4});
  auto [windows, padded] = model::window_partition3d(x, 4);
  EXPECT_EQ(windows.sizes(), (std::vector<int64_t>{2 * 2 * 2 * 1, 4, 4, 4, 4}));
  EXPECT_EQ(padded, (std::array<int64_t, 3>{8, 8, 4}));
  // The padding is zeros and the real tokens sit at the window origin.
  EXPECT_TRUE(torch::equal(windows[0].slice(0, 0, 4).slice(1, 0, 4).slice(2, 0, 3),
                           x[0].slice(0, 0, 4).slice(1, 0, 4)));
  EXPECT_EQ(windows[0].select(2, 3).abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(model::window_unpartition3d(windows, 4, padded, {5, 7, 3}), x));
}
