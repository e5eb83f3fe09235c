// The one place that knows which LibTorch it is built against: Debian's 1.13 (CPU) on the
// development machines and CI, pip PyTorch 2.x (CUDA) on the GPU machine.
#pragma once
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <sstream>
#include <string>
#include <type_traits>

#include "msam/common/cpu_gemm.h"

namespace c10d {
class ProcessGroup;
class Backend;
}  // namespace c10d

namespace msam::compat {

constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// The class a c10d backend (ProcessGroupGloo, ProcessGroupNCCL) derives from and that holds its
// collectives: the process group itself in 1.13; 2.0 made the process group a front for
// `Backend` objects, which keep the same allreduce/broadcast/barrier signatures.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

// softmax(q·kᵀ·scale + bias)·v with an optional additive float bias broadcastable to the
// logits. 2.x dispatches to fused SDPA kernels (the additive bias selects the memory-efficient
// kernel on CUDA); 1.13's `_scaled_dot_product_attention` offers no fused CPU kernel.
inline at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const c10::optional<at::Tensor>& bias, double scale) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, bias, 0.0, false, scale);
#else
  // 1.13 has no fused CPU kernel: the explicit form, split across the CPU threads.
  return cpu::attention(q, k, v, bias, scale);
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

// The key of a parameter's state in an optimiser's state map: the TensorImpl's printed address
// in LibTorch 1.x, the pointer itself in 2.x.
template <class StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap&, const at::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// Multiplies every tensor of `tensors` in place by the one-element tensor `factor` (on their
// device, so without a host sync): one multi-tensor op where LibTorch has it (2.1+).
inline void mul_all_(at::TensorList tensors, const at::Tensor& factor) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  at::_foreach_mul_(tensors, factor);
#else
  for (const auto& t : tensors) t.mul_(factor);
#endif
}

}  // namespace msam::compat
