// Building blocks shared by the image encoder, the mask-enhanced adapter and the decoder.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace msam::model {

// Channel-first LayerNorm over dim 1 of a B×C×D×H×W tensor: biased variance,
// (x-μ)/sqrt(σ²+eps). eps is 1e-6 everywhere in the reference.
class LayerNorm3dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm3dImpl(int64_t channels, double eps = 1e-6);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm3d);

// lin2(act(lin1(x))) with exact (erf) GELU or ReLU; names match the reference `MLPBlock`.
class MLPBlockImpl : public torch::nn::Module {
 public:
  enum class Activation { GELU, ReLU };
  MLPBlockImpl(int64_t dim, int64_t hidden, Activation act = Activation::GELU);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear lin1{nullptr}, lin2{nullptr};
  Activation act;
};
TORCH_MODULE(MLPBlock);

// The reference's decomposed 3D relative-position term, *with its broadcasting slip*.
// For logits S[qd,qh,qw, kd,kh,kw] the reference adds
//   RD[qd,qh,qw, kw] + RH[qd,qh, kd, kw] + RW[qd,qh, kh, kw]
// (RH/RW read the query row whose w index is replaced by kd / kh), not the textbook
// RD[..,kd] + RH[..,kh] + RW[..,kw]. Trained weights depend on it: do not "fix" it
// (docs/design.md §4.1).
// q: (B, n, n, n, hd) unscaled queries; tables (2n-1)×hd. Returns (B, n³, n³).
torch::Tensor scrambled_rel_pos_bias(const torch::Tensor& q, const torch::Tensor& rel_d,
                                     const torch::Tensor& rel_h, const torch::Tensor& rel_w);

// table[i - j + n - 1] for i < q_size, j < k_size: the (q_size, k_size, hd) lookup of
// `get_rel_pos` when the table already has 2·max-1 rows (always the case here).
torch::Tensor rel_pos_lookup(const torch::Tensor& table, int64_t q_size, int64_t k_size);

// Global multi-head self-attention over an n³ grid with the scrambled relative position.
// x: (B, n, n, n, C) → (B, n, n, n, C) before `proj`. qkv: (B, n³, 3C) from the fused
// projection. Used by global encoder blocks and by the adapter's attention.
torch::Tensor global_rel_pos_attention(const torch::Tensor& qkv, int64_t n, int64_t num_heads,
                                       const torch::Tensor& rel_d, const torch::Tensor& rel_h,
                                       const torch::Tensor& rel_w);

}  // namespace msam::model
