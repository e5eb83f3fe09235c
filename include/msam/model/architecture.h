// The network's architecture, described once: one struct (MSAMConfig), one list of its keys
// (visit), one validation. The run configuration's `model` section (YAML, train/config.cpp),
// the checkpoints' `model_config` metadata (JSON, below) and every command go through them.
// No LibTorch here, so the run configuration can include it cheaply.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "msam/model/dense_pe_axes.h"

namespace msam::model {

// The image encoder. Defaults are SAM-Med3D's vit_b_ori as M-SAM builds it.
struct ImageEncoderConfig {
  int64_t img_size = 128;
  int64_t patch_size = 16;
  int64_t in_chans = 1;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  int64_t out_chans = 384;
  bool qkv_bias = true;
  bool use_abs_pos = true;
  bool use_rel_pos = true;
  int64_t window_size = 14;  // 0: every block global
  std::vector<int64_t> global_attn_indexes{2, 5, 8, 11};
  double norm_eps = 1e-6;  // block LayerNorms (the reference builder passes 1e-6)
  int64_t lora_rank = 0;   // > 0: LoRA of this rank on q and v of every block

  int64_t grid() const { return img_size / patch_size; }  // tokens per axis
  // Throws msam::Error "model.encoder.<key>: <problem>" for the first inconsistent field.
  void validate() const;
};

struct MSAMConfig {
  ImageEncoderConfig encoder;  // out_chans is the prompt / adapter / decoder width
  int64_t adapter_heads = 6;
  int64_t adapter_blocks = 1;
  int64_t decoder_heads = 8;
  int64_t decoder_mlp_dim = 2048;
  int64_t mask_in_chans = 16;
  DensePeAxes dense_pe_axes = DensePeAxes::kReference;

  int64_t width() const { return encoder.out_chans; }
  int64_t grid() const { return encoder.grid(); }
  int64_t low_res_size() const { return 4 * encoder.grid(); }  // the decoder's mask grid
  // Throws msam::Error "model.<key>: <problem>" (the run configuration's key) for the first
  // inconsistent field.
  void validate() const;
  // The JSON text stored in checkpoints (metadata "model_config"), so that inference rebuilds
  // exactly the trained architecture; from_json also reads the flat layout that msam wrote
  // before this one (the reference's key names).
  std::string to_json() const;
  static MSAMConfig from_json(const std::string& text, const std::string& source);
};

// The keys of the architecture as the run configuration's `model` section names them:
// `v(key, field)` for a value, `v.section(key, fn)` for a nested map of keys.
template <class V>
void visit(V& v, MSAMConfig& c) {
  auto& e = c.encoder;
  v.section("encoder", [&](V& s) {
    s("embed_dim", e.embed_dim);
    s("depth", e.depth);
    s("num_heads", e.num_heads);
    s("global_attn_indexes", e.global_attn_indexes);
    s("window", e.window_size);
    s("patch", e.patch_size);
    s("img", e.img_size);
    s("in_chans", e.in_chans);
    s("mlp_ratio", e.mlp_ratio);
  });
  v("prompt_width", e.out_chans);
  v("lora_rank", e.lora_rank);
  v.section("adapter", [&](V& s) {
    s("heads", c.adapter_heads);
    s("blocks", c.adapter_blocks);
  });
  v.section("decoder", [&](V& s) {
    s("heads", c.decoder_heads);
    s("mlp", c.decoder_mlp_dim);
  });
  v("mask_in_chans", c.mask_in_chans);
  v("dense_pe_axes", c.dense_pe_axes);
}

// An encoder config in the reference's key names (img_size, patch_size, in_chans, embed_dim,
// depth, num_heads, mlp_ratio, out_chans, window_size, global_attn_indexes, and optionally
// qkv_bias, use_abs_pos, use_rel_pos, norm_layer_eps, lora_rank): the parity fixtures'
// metadata and msam's checkpoints before the nested layout. Throws nlohmann's errors.
ImageEncoderConfig encoder_from_reference_json(const nlohmann::json& j);

// "reference" / "aligned", as checkpoints and run configs spell them; parsing throws
// msam::Error naming `source` for any other name.
std::string dense_pe_axes_name(DensePeAxes axes);
DensePeAxes parse_dense_pe_axes(const std::string& name, const std::string& source);

}  // namespace msam::model
