#include "msam/model/lora.h"

#include <torch/torch.h>

#include "msam/common/cpu_gemm.h"

namespace msam::model {

namespace {
torch::nn::Linear no_bias_linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}
}  // namespace

LoRAQkvImpl::LoRAQkvImpl(torch::nn::Linear qkv_, int64_t rank) {
  const int64_t dim = qkv_->options.in_features();
  const auto opts = qkv_->weight.options();
  qkv = register_module("qkv", std::move(qkv_));
  linear_a_q = register_module("linear_a_q", no_bias_linear(dim, rank));
  linear_b_q = register_module("linear_b_q", no_bias_linear(rank, dim));
  linear_a_v = register_module("linear_a_v", no_bias_linear(dim, rank));
  linear_b_v = register_module("linear_b_v", no_bias_linear(rank, dim));
  torch::NoGradGuard no_grad;
  torch::nn::init::zeros_(linear_b_q->weight);
  torch::nn::init::zeros_(linear_b_v->weight);
  for (auto* m : {&linear_a_q, &linear_b_q, &linear_a_v, &linear_b_v})
    (*m)->to(opts.device(), opts.dtype().toScalarType());
}

torch::Tensor LoRAQkvImpl::forward(const torch::Tensor& x) {
  const int64_t dim = qkv->options.in_features();
  auto out = cpu::linear(x, qkv->weight, qkv->bias);
  out.narrow(-1, 0, dim).add_(linear_b_q(linear_a_q(x)));
  out.narrow(-1, 2 * dim, dim).add_(linear_b_v(linear_a_v(x)));
  return out;
}

torch::nn::Linear LoRAQkvImpl::merged() const {
  torch::NoGradGuard no_grad;
  const int64_t dim = qkv->options.in_features();
  torch::nn::Linear out(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv->options.bias()));
  out->to(qkv->weight.device(), qkv->weight.scalar_type());
  auto w = qkv->weight.clone();
  w.narrow(0, 0, dim).add_(torch::matmul(linear_b_q->weight, linear_a_q->weight));
  w.narrow(0, 2 * dim, dim).add_(torch::matmul(linear_b_v->weight, linear_a_v->weight));
  out->weight.copy_(w);
  if (qkv->options.bias()) out->bias.copy_(qkv->bias);
  return out;
}

std::string lora_qkv_key(const std::string& key) {
  static const std::string tail = "attn.qkv.";
  for (const char* leaf : {"weight", "bias"}) {
    const std::string suffix = tail + leaf;
    if (key.size() >= suffix.size() &&
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        (key.size() == suffix.size() || key[key.size() - suffix.size() - 1] == '.'))
      return key.substr(0, key.size() - suffix.size()) + tail + "qkv." + leaf;
  }
  return key;
}

std::map<std::string, at::Tensor> with_lora_qkv_keys(
    const std::map<std::string, at::Tensor>& weights) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, value] : weights) out.emplace(lora_qkv_key(key), value);
  return out;
}

}  // namespace msam::model
