// The architecture is one struct with one key list: checkpoints store it under the run
// configuration's key names and read it back exactly, checkpoints of the earlier flat layout
// still load, and a missing, unknown or inconsistent key is an error naming it.
#include <gtest/gtest.h>

#include "msam/common/error.h"
#include "msam/model/architecture.h"
#include "msam/model/presets.h"

using namespace msam;
using model::MSAMConfig;

namespace {

std::string error_of(const std::string& json) {
  try {
    MSAMConfig::from_json(json, "ckpt.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(Architecture, CheckpointJsonUsesTheRunConfigKeysAndRoundTrips) {
  auto c = model::tiny_cpu_config();
  c.dense_pe_axes = model::DensePeAxes::kAligned;
  c.adapter_blocks = 2;
  const auto json = nlohmann::json::parse(c.to_json());
  EXPECT_EQ(json.at("encoder").at("img"), 64);
  EXPECT_EQ(json.at("encoder").at("window"), 14);
  EXPECT_EQ(json.at("prompt_width"), 96);
  EXPECT_EQ(json.at("adapter").at("blocks"), 2);
  EXPECT_EQ(json.at("dense_pe_axes"), "aligned");
  const auto back = MSAMConfig::from_json(c.to_json(), "ckpt");
  EXPECT_EQ(back.to_json(), c.to_json());
}

TEST(Architecture, TheEarlierFlatLayoutStillLoads) {
  // What msam wrote into checkpoints before the nested layout (the reference's names).
  const std::string flat =
      R"({"img_size":64,"patch_size":8,"in_chans":1,"embed_dim":96,"depth":2,"num_heads":4,)"
      R"("mlp_ratio":4.0,"out_chans":96,"window_size":14,"global_attn_indexes":[1],)"
      R"("lora_rank":4,"adapter_heads":2,"adapter_blocks":1,"decoder_heads":4,)"
      R"("decoder_mlp_dim":256,"mask_in_chans":16})";
  const auto c = MSAMConfig::from_json(flat, "old.safetensors");
  EXPECT_EQ(c.to_json(), model::tiny_cpu_config().to_json());
  EXPECT_EQ(c.dense_pe_axes, model::DensePeAxes::kReference);  // before the key existed
}

TEST(Architecture, BadMetadataNamesTheKey) {
  auto j = nlohmann::json::parse(model::tiny_cpu_config().to_json());
  auto missing = j;
  missing.at("decoder").erase("mlp");
  EXPECT_NE(error_of(missing.dump()).find("ckpt.safetensors: model_config: 'decoder.mlp' is missing"),
            std::string::npos)
      << error_of(missing.dump());
  auto unknown = j;
  unknown["encoder"]["experts"] = 8;
  EXPECT_NE(error_of(unknown.dump()).find("unknown key 'encoder.experts'"), std::string::npos)
      << error_of(unknown.dump());
  auto wrong = j;
  wrong["prompt_width"] = "wide";
  EXPECT_NE(error_of(wrong.dump()).find("'prompt_width' has the wrong type"), std::string::npos)
      << error_of(wrong.dump());
  auto inconsistent = j;
  inconsistent["prompt_width"] = 100;
  EXPECT_NE(error_of(inconsistent.dump()).find("model.prompt_width: 100 is not divisible by 3"),
            std::string::npos)
      << error_of(inconsistent.dump());
  EXPECT_NE(error_of("[1, 2]").find("not a JSON object"), std::string::npos);
}

TEST(Architecture, OneValidationWithTheRunConfigKeys) {
  auto message = [](const MSAMConfig& c) {
    try {
      c.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("valid");
  };
  auto c = model::tiny_cpu_config();
  EXPECT_EQ(message(c), "valid");
  auto heads = c;
  heads.encoder.num_heads = 5;
  EXPECT_EQ(message(heads), "model.encoder.embed_dim: 96 is not divisible by model.encoder.num_heads (5)");
  auto global = c;
  global.encoder.global_attn_indexes = {2};
  EXPECT_EQ(message(global), "model.encoder.global_attn_indexes: block 2 is outside 0..1");
  auto patch = c;
  patch.encoder.patch_size = 7;
  EXPECT_EQ(message(patch), "model.encoder.img: 64 is not divisible by model.encoder.patch (7)");
  auto adapter = c;
  adapter.adapter_heads = 5;
  EXPECT_EQ(message(adapter), "model.adapter.heads: model.prompt_width (96) is not divisible by 5");
  auto decoder = c;
  decoder.decoder_heads = 5;
  EXPECT_EQ(message(decoder),
            "model.decoder.heads: model.prompt_width / 2 (48) is not divisible by 5");
}
