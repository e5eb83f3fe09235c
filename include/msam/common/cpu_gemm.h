// Matrix products that use every CPU core through row blocks.
//
// Why: on the 2-core development machine OpenBLAS's own threading reaches ~85 GFLOP/s on the
// image encoder's 512-row products, while one single-threaded OpenBLAS call per intra-op
// thread on disjoint row blocks reaches ~150 GFLOP/s (tools: `msam bench`). The split runs only
// where no autograd graph is recorded (inference, the frozen encoder) and only on the CPU; every
// other case is the plain ATen op, so results and gradients never depend on the path.
#pragma once
#include <ATen/ATen.h>

namespace msam::cpu {

// x·weightᵀ + bias over the last dim of x (like torch::nn::functional::linear).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// softmax(q·kᵀ·scale + bias)·v for q (…, Lq, D), k/v (…, Lk, D) and an optional additive bias
// broadcastable to the logits (…, Lq, Lk); the leading dims are split across threads.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const c10::optional<at::Tensor>& bias, double scale);

}  // namespace msam::cpu
