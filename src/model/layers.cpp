#include "msam/model/layers.h"

#include <torch/torch.h>

#include "msam/common/compat.h"
#include "msam/common/cpu_gemm.h"

namespace msam::model {

LayerNorm3dImpl::LayerNorm3dImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor LayerNorm3dImpl::forward(const torch::Tensor& x_in) {
  // Statistics in float32 at least: under fp16 autocast the preceding convolution hands over
  // half-precision activations, whose squares overflow.
  const bool reduced = x_in.scalar_type() == torch::kHalf || x_in.scalar_type() == torch::kBFloat16;
  const auto x = reduced ? x_in.to(torch::kFloat) : x_in;
  auto u = x.mean(1, true);
  auto d = x - u;
  auto s = d.pow(2).mean(1, true);
  auto y = d / torch::sqrt(s + eps);
  return weight.view({1, -1, 1, 1, 1}) * y + bias.view({1, -1, 1, 1, 1});
}

MLPBlockImpl::MLPBlockImpl(int64_t dim, int64_t hidden, Activation a) : act(a) {
  lin1 = register_module("lin1", torch::nn::Linear(dim, hidden));
  lin2 = register_module("lin2", torch::nn::Linear(hidden, dim));
}

torch::Tensor MLPBlockImpl::forward(const torch::Tensor& x) {
  auto h = cpu::linear(x, lin1->weight, lin1->bias);
  h = act == Activation::GELU ? torch::gelu(h) : torch::relu(h);
  return cpu::linear(h, lin2->weight, lin2->bias);
}

torch::Tensor rel_pos_lookup(const torch::Tensor& table, int64_t q_size, int64_t k_size) {
  const int64_t n = std::max(q_size, k_size);
  TORCH_CHECK(table.size(0) == 2 * n - 1, "relative-position table has ", table.size(0),
              " rows, expected ", 2 * n - 1);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(table.device());
  auto idx = torch::arange(q_size, opts).unsqueeze(1) - torch::arange(k_size, opts).unsqueeze(0) +
             (k_size - 1);
  return table.index_select(0, idx.reshape(-1)).view({q_size, k_size, table.size(1)});
}

torch::Tensor scrambled_rel_pos_bias(const torch::Tensor& q, const torch::Tensor& rel_d,
                                     const torch::Tensor& rel_h, const torch::Tensor& rel_w) {
  const int64_t B = q.size(0), n = q.size(1), N = n * n * n;
  auto Rd = rel_pos_lookup(rel_d, n, n), Rh = rel_pos_lookup(rel_h, n, n),
       Rw = rel_pos_lookup(rel_w, n, n);
  auto RD = torch::einsum("bdhwc,dkc->bdhwk", {q, Rd});
  auto RH = torch::einsum("bdhwc,hkc->bdhwk", {q, Rh});
  auto RW = torch::einsum("bdhwc,wkc->bdhwk", {q, Rw});
  // The reference's `rel_d[..., None, None] + rel_h[:, :, :, None, :, None] +
  // rel_w[:, :, :, None, None, :]` against logits viewed as (B, qd,qh,qw, kd,kh,kw).
  // RH + RW does not depend on qw: add it small, then one contiguous broadcast add.
  auto kdkh = (RH.reshape({B, n, n, n, 1, n}) + RW.reshape({B, n, n, 1, n, n}))
                  .contiguous()
                  .view({B, n, n, 1, n * n, n});
  return (RD.contiguous().view({B, n, n, n, 1, n}) + kdkh).reshape({B, N, N});
}

torch::Tensor global_rel_pos_attention(const torch::Tensor& qkv, int64_t n, int64_t num_heads,
                                       const torch::Tensor& rel_d, const torch::Tensor& rel_h,
                                       const torch::Tensor& rel_w) {
  const int64_t B = qkv.size(0), N = n * n * n, C = qkv.size(-1) / 3, hd = C / num_heads;
  auto t = qkv.reshape({B, N, 3, num_heads, hd}).permute({2, 0, 3, 1, 4});
  auto q = t[0], k = t[1], v = t[2];  // (B, nh, N, hd)
  auto bias = scrambled_rel_pos_bias(q.reshape({B * num_heads, n, n, n, hd}), rel_d, rel_h, rel_w)
                  .view({B, num_heads, N, N});
  auto out = compat::attention(q, k, v, bias, 1.0 / std::sqrt(static_cast<double>(hd)));
  return out.permute({0, 2, 1, 3}).reshape({B, n, n, n, C});
}

}  // namespace msam::model
