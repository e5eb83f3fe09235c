// ImageEncoderViT3D and its LoRA variant against the reference outputs (fixtures a and f).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "msam/model/image_encoder.h"
#include "msam/model/state_dict.h"

using namespace msam;
using model::WindowPath;

namespace {

const char* kEncoderFile = "image_encoder_small.safetensors";
const char* kLoraFile = "lora_qkv.safetensors";

// The fixture's own config (reduced width and depth, same code paths as vit_b), in the
// reference's key names.
model::ImageEncoderConfig fixture_config(int64_t lora_rank) {
  auto c = model::encoder_from_reference_json(
      nlohmann::json::parse(test::parity_fixture(kEncoderFile).metadata.at("config")));
  c.lora_rank = lora_rank;
  return c;
}

// Encoder with the fixture weights (strict: every reference key, nothing else).
model::ImageEncoderViT3D load_encoder(torch::Dtype dtype, WindowPath path, bool lora) {
  const auto& base = test::parity_fixture(kEncoderFile);
  model::ImageEncoderViT3D enc(fixture_config(lora ? 4 : 0));
  if (lora) {
    auto weights = model::with_lora_qkv_keys(base.tensors);
    for (const auto& [k, v] : test::parity_fixture(kLoraFile).tensors) weights[k] = v;
    model::load_state_dict(*enc, weights, "image_encoder.", true, {}, kLoraFile);
  } else {
    model::load_state_dict(*enc, base.tensors, "image_encoder.", true, {}, kEncoderFile);
  }
  enc->to(test::device(), dtype);
  enc->eval();
  enc->set_window_path(path);
  return enc;
}

torch::Tensor input_image(torch::Dtype dtype) {
  return test::on_device(test::parity_fixture(kEncoderFile).at("input.image"), dtype);
}

test::Tol tolerance(torch::Dtype dtype) {
  return dtype == torch::kDouble ? test::kF64 : test::kModuleF32;
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<torch::Dtype, WindowPath>>& p) {
  return std::string(std::get<0>(p.param) == torch::kDouble ? "F64" : "F32") +
         (std::get<1>(p.param) == WindowPath::Fast ? "Fast" : "Padded");
}

class ImageEncoderParity
    : public ::testing::TestWithParam<std::tuple<torch::Dtype, WindowPath>> {};

}  // namespace

TEST_P(ImageEncoderParity, EveryStageMatchesReference) {
  const auto [dtype, path] = GetParam();
  torch::NoGradGuard no_grad;
  const auto& f = test::parity_fixture(kEncoderFile);
  const auto tol = tolerance(dtype);
  auto enc = load_encoder(dtype, path, false);
  auto image = input_image(dtype);

  auto x = enc->patch_embed(image);
  MSAM_EXPECT_CLOSE(x, f.at("output.patch_embed"), tol);
  x = x + enc->pos_embed;
  for (size_t i = 0; i < enc->blocks->size(); ++i) {
    x = enc->block(i).forward(x);
    MSAM_EXPECT_CLOSE(x, f.at("output.block" + std::to_string(i)), tol) << "block " << i;
  }
  auto embedding = enc->neck->forward(x.permute({0, 4, 1, 2, 3}));
  MSAM_EXPECT_CLOSE(embedding, f.at("output.image_embedding"), tol);
  // forward() chains the same stages, with the CPU's neck as matrix products instead of the
  // convolutions above (checked once: the padded path is slow).
  if (path == WindowPath::Fast) {
    MSAM_EXPECT_CLOSE(enc->forward(image), f.at("output.image_embedding"), tol);
  }
}

INSTANTIATE_TEST_SUITE_P(DtypesAndPaths, ImageEncoderParity,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble),
                                            ::testing::Values(WindowPath::Fast,
                                                              WindowPath::Padded)),
                         param_name);
