#include "msam/model/architecture.h"

#include <algorithm>

#include "msam/common/error.h"
#include "msam/common/names.h"

namespace msam::model {

namespace {

[[noreturn]] void fail(const std::string& key, const std::string& problem) {
  throw Error("model." + key + ": " + problem);
}

void positive(int64_t v, const std::string& key) {
  if (v <= 0) fail(key, "must be > 0, got " + std::to_string(v));
}

// Writes the fields visit() names into a JSON object.
struct JsonWriter {
  nlohmann::json node = nlohmann::json::object();
  template <class T>
  void operator()(const char* key, const T& value) {
    node[key] = value;
  }
  void operator()(const char* key, const DensePeAxes& value) {
    node[key] = dense_pe_axes_name(value);
  }
  template <class F>
  void section(const char* key, F fn) {
    JsonWriter sub;
    fn(sub);
    node[key] = sub.node;
  }
};

// Reads them back: every key must be there with its type, and no other key (a checkpoint
// from a newer msam with more architecture is refused, not half read).
struct JsonReader {
  const nlohmann::json& node;
  std::string prefix, source;
  std::vector<std::string> known;

  const nlohmann::json& at(const char* key) {
    known.push_back(key);
    if (!node.contains(key))
      throw file_error(source, "model_config: '" + prefix + key + "' is missing");
    return node.at(key);
  }
  template <class T>
  void operator()(const char* key, T& value) {
    const auto& j = at(key);
    try {
      value = j.get<T>();
    } catch (const nlohmann::json::exception&) {
      throw file_error(source, "model_config: '" + prefix + key + "' has the wrong type: " +
                                   j.dump());
    }
  }
  void operator()(const char* key, DensePeAxes& value) {
    const auto& j = at(key);
    if (!j.is_string())
      throw file_error(source, "model_config: '" + prefix + key + "' is not a name");
    value = parse_dense_pe_axes(j.get<std::string>(), source);
  }
  template <class F>
  void section(const char* key, F fn) {
    const auto& j = at(key);
    if (!j.is_object())
      throw file_error(source, "model_config: '" + prefix + key + "' is not a map");
    JsonReader sub{j, prefix + key + ".", source, {}};
    fn(sub);
    sub.finish();
  }
  void finish() const {
    for (const auto& [key, value] : node.items())
      if (std::find(known.begin(), known.end(), key) == known.end())
        throw file_error(source, "model_config: unknown key '" + prefix + key +
                                     "' (written by a newer msam?)");
  }
};

// msam's checkpoints before the nested layout: the reference's flat names.
MSAMConfig from_flat_json(const nlohmann::json& j, const std::string& source) {
  MSAMConfig c;
  c.encoder = encoder_from_reference_json(j);
  c.adapter_heads = j.at("adapter_heads");
  c.adapter_blocks = j.at("adapter_blocks");
  c.decoder_heads = j.at("decoder_heads");
  c.decoder_mlp_dim = j.at("decoder_mlp_dim");
  c.mask_in_chans = j.at("mask_in_chans");
  // Checkpoints written before the key existed were trained with the reference axes.
  c.dense_pe_axes = parse_dense_pe_axes(j.value("dense_pe_axes", "reference"), source);
  return c;
}

}  // namespace

std::string dense_pe_axes_name(DensePeAxes axes) { return name_in(kDensePeAxesNames, axes); }

DensePeAxes parse_dense_pe_axes(const std::string& name, const std::string& source) {
  return parse_name(kDensePeAxesNames, name, "dense_pe_axes", source);
}

void ImageEncoderConfig::validate() const {
  positive(embed_dim, "encoder.embed_dim");
  positive(depth, "encoder.depth");
  positive(num_heads, "encoder.num_heads");
  if (embed_dim % num_heads != 0)
    fail("encoder.embed_dim", std::to_string(embed_dim) +
                                  " is not divisible by model.encoder.num_heads (" +
                                  std::to_string(num_heads) + ")");
  for (size_t i = 0; i < global_attn_indexes.size(); ++i) {
    const int64_t b = global_attn_indexes[i];
    if (b < 0 || b >= depth)
      fail("encoder.global_attn_indexes",
           "block " + std::to_string(b) + " is outside 0.." + std::to_string(depth - 1));
    if (i > 0 && b <= global_attn_indexes[i - 1])
      fail("encoder.global_attn_indexes", "must be strictly increasing");
  }
  if (window_size < 0)
    fail("encoder.window", "must be >= 0 (0: every block global), got " +
                               std::to_string(window_size));
  positive(patch_size, "encoder.patch");
  positive(img_size, "encoder.img");
  if (img_size % patch_size != 0)
    fail("encoder.img", std::to_string(img_size) + " is not divisible by model.encoder.patch (" +
                            std::to_string(patch_size) + ")");
  positive(in_chans, "encoder.in_chans");
  if (!(mlp_ratio > 0)) fail("encoder.mlp_ratio", "must be > 0");
  positive(out_chans, "prompt_width");
  if (lora_rank < 0) fail("lora_rank", "must be >= 0, got " + std::to_string(lora_rank));
}

void MSAMConfig::validate() const {
  encoder.validate();
  const int64_t w = width();
  // The prompt encoder's Fourier features give 3 × (w / 3) channels; the decoder upscales to
  // w/4 then w/8 channels.
  if (w % 3 != 0)
    fail("prompt_width", std::to_string(w) + " is not divisible by 3 (sin/cos/sin Fourier features)");
  if (w % 8 != 0)
    fail("prompt_width",
         std::to_string(w) + " is not divisible by 8 (decoder upscaling to width/8)");
  positive(adapter_heads, "adapter.heads");
  positive(adapter_blocks, "adapter.blocks");
  if (w % adapter_heads != 0)
    fail("adapter.heads", "model.prompt_width (" + std::to_string(w) +
                              ") is not divisible by " + std::to_string(adapter_heads));
  positive(decoder_heads, "decoder.heads");
  positive(decoder_mlp_dim, "decoder.mlp");
  // Cross-attention runs at half width (attention downsample 2).
  if ((w / 2) % decoder_heads != 0)
    fail("decoder.heads", "model.prompt_width / 2 (" + std::to_string(w / 2) +
                              ") is not divisible by " + std::to_string(decoder_heads));
  if (mask_in_chans <= 0 || mask_in_chans % 4 != 0)
    fail("mask_in_chans", "must be a positive multiple of 4, got " + std::to_string(mask_in_chans));
}

std::string MSAMConfig::to_json() const {
  JsonWriter w;
  auto copy = *this;
  visit(w, copy);
  return w.node.dump();
}

MSAMConfig MSAMConfig::from_json(const std::string& text, const std::string& source) {
  MSAMConfig c;
  try {
    const auto j = nlohmann::json::parse(text);
    if (!j.is_object()) throw file_error(source, "model_config metadata is not a JSON object");
    if (j.contains("img_size")) {
      c = from_flat_json(j, source);
    } else {
      JsonReader r{j, "", source, {}};
      visit(r, c);
      r.finish();
    }
  } catch (const nlohmann::json::exception& ex) {
    throw file_error(source, std::string("bad model_config metadata: ") + ex.what());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw file_error(source, std::string("model_config: ") + e.what());
  }
  return c;
}

ImageEncoderConfig encoder_from_reference_json(const nlohmann::json& j) {
  ImageEncoderConfig c;
  c.img_size = j.at("img_size");
  c.patch_size = j.at("patch_size");
  c.in_chans = j.at("in_chans");
  c.embed_dim = j.at("embed_dim");
  c.depth = j.at("depth");
  c.num_heads = j.at("num_heads");
  c.mlp_ratio = j.at("mlp_ratio");
  c.out_chans = j.at("out_chans");
  c.window_size = j.at("window_size");
  c.global_attn_indexes = j.at("global_attn_indexes").get<std::vector<int64_t>>();
  c.qkv_bias = j.value("qkv_bias", c.qkv_bias);
  c.use_abs_pos = j.value("use_abs_pos", c.use_abs_pos);
  c.use_rel_pos = j.value("use_rel_pos", c.use_rel_pos);
  c.norm_eps = j.value("norm_layer_eps", c.norm_eps);
  c.lora_rank = j.value("lora_rank", c.lora_rank);
  return c;
}

}  // namespace msam::model
