#include "msam/io/pth_import.h"

#include <cstring>
#include <fstream>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"
#include "msam/io/torch_pickle.h"

namespace msam::io {
namespace {

// ---- checkpoint structure ----------------------------------------------------------------

bool is_plain_state_dict(const PickleValue& v) {
  if (v.kind != PickleValue::Kind::Dict || v.entries.empty()) return false;
  for (const auto& [k, x] : v.entries)
    if (k->kind != PickleValue::Kind::String || x->kind != PickleValue::Kind::Tensor) return false;
  return true;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string detect_layout(const std::map<std::string, at::Tensor>& state,
                          const std::string& path) {
  bool sam = false;
  for (const auto& [k, t] : state) {
    if (starts_with(k, "lora_sam.") || starts_with(k, "bidatt.")) return "msam";
    sam = sam || starts_with(k, "image_encoder.") || starts_with(k, "prompt_encoder.") ||
          starts_with(k, "mask_decoder.");
  }
  if (sam) return "sam_med3d";
  throw file_error(path, "state dict has neither SAM-Med3D keys (image_encoder.*, "
                         "prompt_encoder.*, mask_decoder.*) nor M-SAM keys (lora_sam.sam.*, "
                         "bidatt.*)" +
                             (state.empty() ? std::string(": it is empty")
                                            : "; first key '" + state.begin()->first + "'"));
}

bool looks_like_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[9];
  if (!in.read(head, 9)) return false;
  return head[8] == '{';
}

}  // namespace

PthCheckpoint read_pth(const std::string& path) {
  TorchArchive archive(path);
  const PickleValuePtr& root = archive.root();
  if (root->kind != PickleValue::Kind::Dict)
    throw file_error(path, "checkpoint is " + describe(*root) + ", not a dict");

  PickleValuePtr state = dict_get(*root, "model_state_dict");
  if (!state) state = dict_get(*root, "state_dict");
  if (!state && is_plain_state_dict(*root)) state = root;
  if (!state)
    throw file_error(path, "no 'model_state_dict' or 'state_dict' entry, and the top-level dict "
                           "is not a plain state dict");
  if (state->kind != PickleValue::Kind::Dict)
    throw file_error(path, "the model state dict is " + describe(*state) + ", not a dict");

  PthCheckpoint out;
  out.source = path;
  for (const auto& [k, v] : state->entries) {
    if (k->kind != PickleValue::Kind::String)
      throw file_error(path, "state dict key is " + describe(*k) + ", not a string");
    out.state[k->s] = archive.tensor(k->s, *v);
  }
  out.layout = detect_layout(out.state, path);
  if (state != root)
    for (const auto& [k, v] : root->entries)
      if (k->kind == PickleValue::Kind::String && v != state)
        if (auto j = simple_json(*v)) out.info[k->s] = std::move(*j);
  return out;
}

std::map<std::string, at::Tensor> to_msam_keys(const std::map<std::string, at::Tensor>& state,
                                               const std::string& layout) {
  if (layout == "sam_med3d") return state;
  if (layout != "msam") throw Error("to_msam_keys: unknown layout '" + layout + "'");
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, t] : state) {
    std::string name;
    if (starts_with(k, "lora_sam.sam."))
      name = k.substr(std::strlen("lora_sam.sam."));
    else if (starts_with(k, "bidatt."))
      name = "adapter." + k.substr(std::strlen("bidatt."));
    else
      throw Error("M-SAM state dict key '" + k + "' is neither lora_sam.sam.* nor bidatt.*");
    if (!out.emplace(name, t).second)
      throw Error("M-SAM state dict keys collide on '" + name + "'");
  }
  return out;
}

ConvertSummary convert_checkpoint(const std::string& in, const std::string& out) {
  ConvertSummary summary;
  if (looks_like_safetensors(in)) {
    const TensorFile f = read_safetensors(in);  // validates it
    summary.already_safetensors = true;
    summary.tensors = f.tensors.size();
    for (const auto& [k, t] : f.tensors) summary.parameters += t.numel();
    return summary;
  }
  PthCheckpoint ckpt = read_pth(in);
  const auto tensors = to_msam_keys(ckpt.state, ckpt.layout);
  std::map<std::string, std::string> metadata{
      {"source", in}, {"layout", ckpt.layout}, {"info", ckpt.info.dump()}};
  if (ckpt.info.contains("epoch")) metadata["epoch"] = ckpt.info["epoch"].dump();
  write_safetensors(out, tensors, metadata);
  summary.layout = ckpt.layout;
  summary.tensors = tensors.size();
  for (const auto& [k, t] : tensors) summary.parameters += t.numel();
  summary.info = std::move(ckpt.info);
  return summary;
}

}  // namespace msam::io
