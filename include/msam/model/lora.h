// Low-rank adaptation of the image encoder's fused qkv projection (the reference's
// `LoRA_Sam` surgery, `_LoRA_qkv`), with the reference's parameter names.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>

namespace msam::model {

// qkv(x) with rank-r updates of its q and v thirds and nothing else:
//   out = W x + b;  out[:C] += B_q A_q x;  out[2C:] += B_v A_v x
// (no scaling, dropout or bias). Parameters: qkv.{weight,bias},
// linear_{a_q,b_q,a_v,b_v}.weight. A is initialised like nn.Linear (Kaiming-uniform), B with
// zeros, so a fresh LoRA leaves the projection unchanged.
class LoRAQkvImpl : public torch::nn::Module {
 public:
  // Wraps `qkv` (C → 3C), keeping the module itself (and so its weights).
  LoRAQkvImpl(torch::nn::Linear qkv, int64_t rank);
  torch::Tensor forward(const torch::Tensor& x);
  // A plain C → 3C projection with B·A folded into the q and v rows: the same function.
  torch::nn::Linear merged() const;

  torch::nn::Linear qkv{nullptr};
  torch::nn::Linear linear_a_q{nullptr}, linear_b_q{nullptr};
  torch::nn::Linear linear_a_v{nullptr}, linear_b_v{nullptr};
};
TORCH_MODULE(LoRAQkv);

// A SAM-Med3D (no LoRA) encoder key as the LoRA model names it:
// `...attn.qkv.weight` → `...attn.qkv.qkv.weight` (same for `bias`); other keys unchanged.
std::string lora_qkv_key(const std::string& key);

// The same renaming over a whole weight map, e.g. to load SAM-Med3D weights into an encoder
// with LoRA (its linear_a/b keys are then the missing ones).
std::map<std::string, at::Tensor> with_lora_qkv_keys(
    const std::map<std::string, at::Tensor>& weights);

}  // namespace msam::model
