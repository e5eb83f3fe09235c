// ImageEncoderViT3D structure, LoRA surgery (names, init, freezing, merging) and input checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/model/image_encoder.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

// 32³ input, 4³ tokens, one windowed block (window 6 pads 4 → 6) and one global block.
model::ImageEncoderConfig tiny_config(int64_t lora_rank = 0) {
  model::ImageEncoderConfig c;
  c.img_size = 32;
  c.patch_size = 8;
  c.embed_dim = 32;
  c.num_heads = 2;
  c.depth = 2;
  c.out_chans = 16;
  c.window_size = 6;
  c.global_attn_indexes = {1};
  c.lora_rank = lora_rank;
  return c;
}

void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0, p.dim() >= 2 ? 1.0 / std::sqrt(p[0].numel()) : 0.3);
}

bool has_key(torch::nn::Module& m, const std::string& key) {
  auto keys = m.named_parameters().keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

}  // namespace

TEST(ImageEncoder, ReferenceParameterNames) {
  model::ImageEncoderViT3D enc(tiny_config());
  for (const char* key :
       {"patch_embed.proj.weight", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.attn.rel_pos_d",
        "blocks.1.attn.rel_pos_w", "blocks.1.mlp.lin2.bias", "neck.0.weight", "neck.1.bias",
        "neck.2.weight", "neck.3.weight"})
    EXPECT_TRUE(has_key(*enc, key)) << key;
  EXPECT_FALSE(has_key(*enc, "neck.0.bias"));
  // Windowed tables cover the window (2·6−1 rows), global ones the 4³ grid (7 rows).
  EXPECT_EQ(enc->block(0).attn->rel_pos_d.size(0), 11);
  EXPECT_EQ(enc->block(1).attn->rel_pos_d.size(0), 7);
  EXPECT_EQ(enc->forward(torch::randn({2, 1, 32, 32, 32})).sizes(),
            (std::vector<int64_t>{2, 16, 4, 4, 4}));
}

TEST(ImageEncoder, RejectsBadInputAndConfig) {
  model::ImageEncoderViT3D enc(tiny_config());
  EXPECT_THROW(enc->forward(torch::randn({1, 1, 16, 32, 32})), Error);
  EXPECT_THROW(enc->forward(torch::randn({1, 2, 32, 32, 32})), Error);
  EXPECT_THROW(enc->forward(torch::randn({1, 32, 32, 32})), Error);
  auto bad = tiny_config();
  bad.num_heads = 3;
  EXPECT_THROW(model::ImageEncoderViT3D{bad}, Error);
  bad = tiny_config();
  bad.global_attn_indexes = {2};
  EXPECT_THROW(model::ImageEncoderViT3D{bad}, Error);
}

TEST(ImageEncoder, LoraKeyMapping) {
  EXPECT_EQ(model::lora_qkv_key("image_encoder.blocks.3.attn.qkv.weight"),
            "image_encoder.blocks.3.attn.qkv.qkv.weight");
  EXPECT_EQ(model::lora_qkv_key("blocks.0.attn.qkv.bias"), "blocks.0.attn.qkv.qkv.bias");
  EXPECT_EQ(model::lora_qkv_key("blocks.0.attn.qkv.qkv.weight"), "blocks.0.attn.qkv.qkv.weight");
  EXPECT_EQ(model::lora_qkv_key("blocks.0.attn.proj.weight"), "blocks.0.attn.proj.weight");
  EXPECT_EQ(model::lora_qkv_key("mask_decoder.self_attn.qkv.weight"),
            "mask_decoder.self_attn.qkv.weight");
}

TEST(ImageEncoder, FreshLoraKeepsBaseOutputAndTrainsOnlyLora) {
  torch::manual_seed(3);
  model::ImageEncoderViT3D base(tiny_config());
  randomize(*base);
  model::ImageEncoderViT3D lora(tiny_config(4));
  EXPECT_TRUE(has_key(*lora, "blocks.0.attn.qkv.qkv.weight"));
  EXPECT_TRUE(has_key(*lora, "blocks.1.attn.qkv.linear_b_v.weight"));
  EXPECT_FALSE(has_key(*lora, "blocks.0.attn.qkv.weight"));

  // SAM-Med3D weights load into the LoRA model once qkv keys are renamed; only A/B remain.
  auto report = model::load_state_dict(*lora, model::with_lora_qkv_keys(model::state_dict(*base)),
                                       "", false);
  EXPECT_TRUE(report.unexpected.empty());
  EXPECT_EQ(report.missing.size(), 8u);
  for (const auto& k : report.missing) EXPECT_NE(k.find(".attn.qkv.linear_"), std::string::npos) << k;

  // A: nn.Linear's Kaiming-uniform (bound 1/sqrt(fan_in)), B: zeros.
  const auto& l = lora->block(0).attn->lora_qkv;
  EXPECT_GT(l->linear_a_q->weight.abs().max().item<double>(), 0.0);
  EXPECT_LE(l->linear_a_q->weight.abs().max().item<double>(), 1.0 / std::sqrt(32.0));
  EXPECT_EQ(l->linear_b_v->weight.abs().max().item<double>(), 0.0);

  auto image = torch::randn({1, 1, 32, 32, 32});
  lora->freeze_base();
  auto out = lora->forward(image);
  EXPECT_TRUE(torch::equal(out, base->forward(image).detach()));

  out.pow(2).sum().backward();
  const auto lora_params = lora->lora_parameters();
  EXPECT_EQ(lora_params.size(), 8u);
  for (auto& p : lora->named_parameters()) {
    const bool is_lora = p.key().find(".linear_") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), is_lora) << p.key();
    if (!is_lora) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    }
  }
  // With B = 0 only B receives a gradient at first.
  EXPECT_GT(l->linear_b_q->weight.grad().abs().max().item<double>(), 0.0);

  lora->freeze_base(false);
  for (auto& p : lora->parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(ImageEncoder, MergedLoraComputesTheSameFunction) {
  torch::manual_seed(4);
  model::ImageEncoderViT3D enc(tiny_config(2));
  randomize(*enc);  // B non-zero
  enc->freeze_base();
  torch::NoGradGuard no_grad;
  auto image = torch::randn({1, 1, 32, 32, 32});
  auto before = enc->forward(image);
  enc->merge_lora();
  EXPECT_EQ(enc->config().lora_rank, 0);
  EXPECT_TRUE(has_key(*enc, "blocks.1.attn.qkv.weight"));
  EXPECT_FALSE(has_key(*enc, "blocks.1.attn.qkv.qkv.weight"));
  EXPECT_FALSE(enc->block(0).attn->qkv->weight.requires_grad());
  EXPECT_LT(((enc->forward(image) - before).abs().max() / before.abs().max()).item<double>(), 1e-5);
}
