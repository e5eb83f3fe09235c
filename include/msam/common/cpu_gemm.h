// Matrix products that use every CPU core through row blocks.
//
// Why: with several intra-op threads, one single-threaded OpenBLAS call per thread on disjoint
// row blocks beats OpenBLAS's own threading on the image encoder's 512-row products (measured
// on the 2-vCPU development machine: 70–81 against 50–86 GFLOP/s; there one thread alone
// reaches 130, as its two vCPUs deliver about one core's throughput). The split runs only
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
