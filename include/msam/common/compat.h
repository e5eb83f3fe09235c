// The one place that knows which LibTorch it is built against: Debian's 1.13 (CPU) on the
// development machines and CI, pip PyTorch 2.x (CUDA) on the GPU machine.
#pragma once
#include <ATen/ATen.h>
#include <torch/version.h>

namespace msam::compat {

constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// softmax(q·kᵀ·scale + bias)·v with an optional additive float bias broadcastable to the
// logits. 2.x dispatches to fused SDPA kernels; 1.13's `_scaled_dot_product_attention`
// offers no fused CPU kernel, so the explicit form is used there.
inline at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const c10::optional<at::Tensor>& bias, double scale) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, bias, 0.0, false, scale);
#else
  auto logits = at::matmul(q * scale, k.transpose(-2, -1));
  if (bias.has_value()) logits = logits + *bias;
  return at::matmul(at::softmax(logits, -1), v);
#endif
}

}  // namespace msam::compat
