// Import of reference PyTorch checkpoints (torch.save zip format, .pth) without Python: the
// layouts of the reference trainers' checkpoints (where the state dict is, SAM-Med3D or
// M-SAM key names), read through the restricted unpickler of torch_pickle.h.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace msam::io {

struct PthCheckpoint {
  std::string source;  // the path it was read from
  // The model's state dict under the reference key names, each tensor contiguous and
  // owning its memory.
  std::map<std::string, at::Tensor> state;
  // "sam_med3d" (image_encoder.*, prompt_encoder.*, mask_decoder.*) or "msam"
  // (lora_sam.sam.*, bidatt.*: the CombinedModel of the M-SAM trainer).
  std::string layout;
  // Top-level entries made only of simple values (epoch, best_dice, best_loss, losses,
  // used_datas, ...); `args` (argparse.Namespace) as an object of its simple fields.
  nlohmann::json info = nlohmann::json::object();
};

// Reads the model state dict from `model_state_dict`, from `state_dict`, or from the
// top-level dict itself when that is a plain state dict. Storages are loaded only for the
// model's tensors (optimizer state is parsed but never materialised).
PthCheckpoint read_pth(const std::string& path);

// Renames reference keys to msam's checkpoint names: SAM-Med3D keys stay; M-SAM keys
// lora_sam.sam.X -> X and bidatt.X -> adapter.X (LoRA names such as
// image_encoder.blocks.N.attn.qkv.linear_a_q.weight stay as they are).
std::map<std::string, at::Tensor> to_msam_keys(const std::map<std::string, at::Tensor>& state,
                                               const std::string& layout);

struct ConvertSummary {
  bool already_safetensors = false;  // input was safetensors: nothing was written
  std::string layout;
  size_t tensors = 0;
  uint64_t parameters = 0;
  nlohmann::json info;
};

// `msam convert`: reads `in` (.pth), writes `out` (safetensors, msam keys) with metadata
// {"source", "layout", "epoch"?, "info"}. If `in` already is a safetensors file it is
// only recognised and nothing is written.
ConvertSummary convert_checkpoint(const std::string& in, const std::string& out);

}  // namespace msam::io
