// The one place that knows which LibTorch it is built against: Debian's 1.13 (CPU) on the
// development machines and CI, pip PyTorch 2.x (CUDA) on the GPU machine.
#pragma once
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
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
  // 3-D bmm/baddbmm on folded batch dims: 1.13's CPU `matmul` on 4-D operands with a
  // transposed key took a slow path in measurements here.
  const int64_t Lq = q.size(-2), Lk = k.size(-2), D = q.size(-1);
  auto out_shape = q.sizes().vec();
  out_shape.back() = v.size(-1);
  auto q3 = q.reshape({-1, Lq, D});
  auto k3 = k.reshape({-1, Lk, D}).transpose(1, 2);
  at::Tensor logits;
  if (bias.has_value()) {
    auto full = q.sizes().vec();
    full.back() = Lk;
    logits = at::baddbmm(bias->expand(full).reshape({-1, Lq, Lk}), q3, k3, 1.0, scale);
  } else {
    logits = at::bmm(q3, k3).mul_(scale);
  }
  return at::bmm(at::softmax(logits, -1), v.reshape({-1, Lk, v.size(-1)})).view(out_shape);
#endif
}

// Mixed precision on CUDA for the guard's lifetime: ops that autocast lists run in `dtype`
// (kHalf or kBFloat16). A no-op for a CPU device or dtype kFloat (CPU training is fp32).
// Restores the previous autocast state and clears the cast cache when the outermost one ends.
class AutocastGuard {
 public:
  AutocastGuard(const c10::Device& device, at::ScalarType dtype)
      : active_(device.is_cuda() && dtype != at::kFloat) {
    if (!active_) return;
#if TORCH_VERSION_MAJOR >= 2
    was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    old_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
    was_enabled_ = at::autocast::is_enabled();
    old_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR >= 2
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, old_dtype_);
#else
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(old_dtype_);
#endif
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  bool active() const { return active_; }

 private:
  bool active_;
  bool was_enabled_ = false;
  at::ScalarType old_dtype_ = at::kHalf;
};

}  // namespace msam::compat
