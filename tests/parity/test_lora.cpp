// LoRA on q and v of every encoder block against the reference `LoRA_Sam` (fixture f).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "msam/model/image_encoder.h"
#include "msam/model/state_dict.h"

using namespace msam;

namespace {

const char* kEncoderFile = "image_encoder_small.safetensors";
const char* kLoraFile = "lora_qkv.safetensors";

model::ImageEncoderConfig lora_config() {
  auto j = nlohmann::json::parse(test::parity_fixture(kEncoderFile).metadata.at("config"));
  auto lora = nlohmann::json::parse(test::parity_fixture(kLoraFile).metadata.at("lora"));
  model::ImageEncoderConfig c;
  c.embed_dim = j.at("embed_dim");
  c.depth = j.at("depth");
  c.num_heads = j.at("num_heads");
  c.global_attn_indexes = j.at("global_attn_indexes").get<std::vector<int64_t>>();
  c.lora_rank = lora.at("r");
  return c;
}

// Base weights from fixture a under the LoRA model's names, LoRA A/B from fixture f.
model::ImageEncoderViT3D lora_encoder(torch::Dtype dtype) {
  auto weights = model::with_lora_qkv_keys(test::parity_fixture(kEncoderFile).tensors);
  for (const auto& [k, v] : test::parity_fixture(kLoraFile).tensors) weights[k] = v;
  model::ImageEncoderViT3D enc(lora_config());
  model::load_state_dict(*enc, weights, "image_encoder.", true, {}, kLoraFile);
  enc->to(test::device(), dtype);
  enc->eval();
  return enc;
}

class LoraParity : public ::testing::TestWithParam<torch::Dtype> {};

std::string dtype_name(const ::testing::TestParamInfo<torch::Dtype>& p) {
  return p.param == torch::kDouble ? "F64" : "F32";
}

}  // namespace

TEST_P(LoraParity, ImageEmbeddingMatchesReference) {
  const auto dtype = GetParam();
  const auto tol = dtype == torch::kDouble ? test::kF64 : test::kModuleF32;
  torch::NoGradGuard no_grad;
  auto enc = lora_encoder(dtype);
  auto image = test::on_device(test::parity_fixture(kEncoderFile).at("input.image"), dtype);
  const auto& ref = test::parity_fixture(kLoraFile).at("output.image_embedding");
  MSAM_EXPECT_CLOSE(enc->forward(image), ref, tol);

  // Folding B·A into qkv gives the same function and the plain (SAM-Med3D) names.
  enc->merge_lora();
  EXPECT_TRUE(enc->lora_parameters().empty());
  const auto names = enc->named_parameters().keys();
  EXPECT_NE(std::find(names.begin(), names.end(), "blocks.0.attn.qkv.weight"), names.end());
  MSAM_EXPECT_CLOSE(enc->forward(image), ref, tol);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LoraParity, ::testing::Values(torch::kFloat, torch::kDouble),
                         dtype_name);
