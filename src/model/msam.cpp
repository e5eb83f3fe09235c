#include "msam/model/msam.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "msam/common/cpu_upsample.h"
#include "msam/common/error.h"
#include "msam/io/pth_import.h"
#include "msam/common/names.h"
#include "msam/io/safetensors.h"
#include "msam/model/lora.h"
#include "msam/model/state_dict.h"

namespace msam::model {

MSAMImpl::MSAMImpl(MSAMConfig config) : config_(std::move(config)) {
  config_.validate();
  image_encoder = register_module("image_encoder", ImageEncoderViT3D(config_.encoder));
  PromptEncoderOptions p;
  p.embed_dim = config_.width();
  p.image_embedding_size = config_.grid();
  p.input_image_size = config_.encoder.img_size;
  p.mask_in_chans = config_.mask_in_chans;
  p.dense_pe_axes = config_.dense_pe_axes;
  prompt_encoder = register_module("prompt_encoder", PromptEncoder3D(p));
  MaskEnhancedAdapterOptions a;
  a.width = config_.width();
  a.num_heads = config_.adapter_heads;
  a.grid = config_.grid();
  a.num_blocks = config_.adapter_blocks;
  adapter = register_module("adapter", MaskEnhancedAdapter(a));
  MaskDecoderOptions d;
  d.transformer_dim = config_.width();
  d.transformer_num_heads = config_.decoder_heads;
  d.transformer_mlp_dim = config_.decoder_mlp_dim;
  mask_decoder = register_module("mask_decoder", MaskDecoder3D(d));
}

bool MSAMImpl::use_graphs(const torch::Tensor& input) const {
  return cuda_graphs_ && input.is_cuda() && !is_training() && !c10::GradMode::is_enabled();
}

void MSAMImpl::set_cuda_graphs(bool enabled) {
  if (!enabled || !CudaGraphCache::supported())
    cuda_graphs_.reset();
  else if (!cuda_graphs_)
    cuda_graphs_ = std::make_shared<CudaGraphCache>();
}

VolumeContext MSAMImpl::encode(const torch::Tensor& image) {
  if (use_graphs(image))
    if (auto embedding = cuda_graphs_->encode(*this, image)) return context(*embedding);
  return context(image_encoder(image));
}

VolumeContext MSAMImpl::context(const torch::Tensor& image_embedding) {
  VolumeContext ctx;
  ctx.image_embedding = image_embedding;
  ctx.adapter_image = adapter->precompute(image_embedding);
  ctx.dense_pe = prompt_encoder->get_dense_pe();
  return ctx;
}

MaskPrediction MSAMImpl::click(const VolumeContext& ctx, const torch::Tensor& points,
                               const torch::Tensor& labels, const torch::Tensor& low_res_mask) {
  if (use_graphs(low_res_mask))
    if (auto pred = cuda_graphs_->click(*this, ctx, points, labels, low_res_mask)) return *pred;
  return click_eager(ctx, points, labels, low_res_mask);
}

MaskPrediction MSAMImpl::click_eager(const VolumeContext& ctx, const torch::Tensor& points,
                                     const torch::Tensor& labels,
                                     const torch::Tensor& low_res_mask) {
  return decode(ctx, adapt(ctx, low_res_mask), points, labels);
}

torch::Tensor MSAMImpl::adapt(const VolumeContext& ctx, const torch::Tensor& low_res_mask) {
  return adapter->forward(ctx.adapter_image, prompt_encoder->dense(low_res_mask));
}

MaskPrediction MSAMImpl::decode(const VolumeContext& ctx, const torch::Tensor& adapted,
                                const torch::Tensor& points, const torch::Tensor& labels) {
  auto sparse = prompt_encoder->sparse(points, labels);
  if (adapted.size(0) != sparse.size(0))
    throw Error("click: " + std::to_string(sparse.size(0)) + " click sets for " +
                std::to_string(adapted.size(0)) + " mask prompts (one per volume)");
  return mask_decoder->forward(adapted, ctx.dense_pe, sparse.to(adapted.scalar_type()), false);
}

torch::Tensor MSAMImpl::upsample(const torch::Tensor& low_res) const {
  const int64_t s = config_.encoder.img_size;
  return cpu::upsample_trilinear(low_res, {s, s, s});
}

namespace {

bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

}  // namespace

std::string load_weights(MSAM& model, const std::map<std::string, at::Tensor>& state_in,
                         WeightsPolicy policy, const std::string& source) {
  auto state = state_in;
  if (model->config().encoder.lora_rank > 0) state = with_lora_qkv_keys(state);
  auto report = load_state_dict(*model, state, "", /*strict=*/false, {}, source);
  std::vector<std::string> missing_required;
  int64_t kept_init = 0;
  for (const auto& k : report.missing) {
    const bool optional = policy == WeightsPolicy::kInitFrom &&
                          (starts_with(k, "adapter.") || k.find(".linear_a_") != std::string::npos ||
                           k.find(".linear_b_") != std::string::npos);
    if (optional)
      ++kept_init;
    else
      missing_required.push_back(k);
  }
  if (!missing_required.empty() || !report.unexpected.empty()) {
    std::string msg = source + ": weights do not fit this model configuration";
    auto list = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      msg += std::string("; ") + what + " (" + std::to_string(keys.size()) + "): ";
      for (size_t i = 0; i < keys.size() && i < 4; ++i) msg += (i ? ", " : "") + keys[i];
      if (keys.size() > 4) msg += ", ...";
    };
    list("missing", missing_required);
    list("unexpected", report.unexpected);
    throw Error(msg);
  }
  return source + ": loaded " + std::to_string(report.loaded.size()) + " tensors" +
         (kept_init ? ", " + std::to_string(kept_init) +
                          " (adapter/LoRA) keep their initialisation"
                    : std::string());
}

WeightsFile read_weights_file(const std::string& path) {
  const bool pth = (path.size() >= 4 && path.substr(path.size() - 4) == ".pth") ||
                   (path.size() >= 3 && path.substr(path.size() - 3) == ".pt");
  WeightsFile out;
  if (pth) {
    auto ckpt = io::read_pth(path);
    out.state = io::to_msam_keys(ckpt.state, ckpt.layout);
    return out;
  }
  auto f = io::read_safetensors(path);
  if (f.metadata.count("model_config"))
    out.config = MSAMConfig::from_json(f.metadata.at("model_config"), path);
  out.state = std::move(f.tensors);
  return out;
}

std::string load_weights(MSAM& model, const std::string& path, WeightsPolicy policy) {
  auto file = read_weights_file(path);
  // The PE axes are no tensor: loading weights trained with the other axes would succeed and
  // silently move every click.
  const auto trained = file.config ? file.config->dense_pe_axes : DensePeAxes::kReference;
  const auto wanted = model->config().dense_pe_axes;
  if (trained != wanted)
    throw file_error(path, "was trained with dense_pe_axes: " + dense_pe_axes_name(trained) +
                               ", the model is configured with " + dense_pe_axes_name(wanted) +
                               " (model.dense_pe_axes)");
  return load_weights(model, file.state, policy, path);
}

MSAMConfig infer_config(const std::map<std::string, at::Tensor>& state,
                        const std::string& source) {
  auto get = [&](const std::string& k) -> const at::Tensor& {
    auto it = state.find(k);
    if (it == state.end())
      throw file_error(source, "not an M-SAM / SAM-Med3D model: tensor '" + k + "' is missing");
    return it->second;
  };
  MSAMConfig c;
  const auto& patch = get("image_encoder.patch_embed.proj.weight");  // C × in × p × p × p
  c.encoder.embed_dim = patch.size(0);
  c.encoder.in_chans = patch.size(1);
  c.encoder.patch_size = patch.size(2);
  c.encoder.img_size = get("image_encoder.pos_embed").size(1) * c.encoder.patch_size;
  c.encoder.out_chans = get("image_encoder.neck.0.weight").size(0);
  const int64_t grid = c.encoder.grid();
  int64_t depth = 0;
  while (state.count("image_encoder.blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
  c.encoder.depth = depth;
  c.encoder.global_attn_indexes.clear();
  for (int64_t i = 0; i < depth; ++i) {
    const auto& rel = get("image_encoder.blocks." + std::to_string(i) + ".attn.rel_pos_d");
    c.encoder.num_heads = c.encoder.embed_dim / rel.size(1);
    const int64_t side = (rel.size(0) + 1) / 2;
    if (side == grid)
      c.encoder.global_attn_indexes.push_back(i);
    else
      c.encoder.window_size = side;
  }
  auto lora = state.find("image_encoder.blocks.0.attn.qkv.linear_a_q.weight");
  c.encoder.lora_rank = lora == state.end() ? 0 : lora->second.size(0);
  c.mask_in_chans = get("prompt_encoder.mask_downscaling.3.weight").size(0);
  auto adapter_rel = state.find("adapter.multi_head_self_attention.rel_pos_d");
  if (adapter_rel != state.end()) c.adapter_heads = c.width() / adapter_rel->second.size(1);
  int64_t blocks = 0;
  while (state.count("adapter.bidirectional_attentions." + std::to_string(blocks) +
                     ".image_conv1.weight"))
    ++blocks;
  if (blocks > 0) c.adapter_blocks = blocks;
  c.decoder_mlp_dim = get("mask_decoder.transformer.layers.0.mlp.lin1.weight").size(0);
  return c;
}

MSAM load_for_inference(const std::string& path, std::string* summary) {
  auto [state, config] = read_weights_file(path);
  if (!state.count("adapter.add_norm.weight"))
    throw file_error(path,
                     "has no Mask-Enhanced Adapter weights (a SAM-Med3D checkpoint?); M-SAM "
                     "needs a trained adapter: train from it first (`msam train`, "
                     "model.checkpoint)");
  MSAM model(config ? *config : infer_config(state, path));
  const std::string s = load_weights(model, state, WeightsPolicy::kExact, path);
  if (summary) *summary = s;
  // B·A folded into qkv: the same function, one matrix product per block instead of three.
  model->image_encoder->merge_lora();
  model->eval();
  return model;
}

}  // namespace msam::model
