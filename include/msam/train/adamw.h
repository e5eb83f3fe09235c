// AdamW with LibTorch's arithmetic and state, each step taken as a few multi-tensor ops.
//
// Why: torch::optim::AdamW updates one tensor at a time, ~10 kernels each; over ViT-B M-SAM's
// 271 trainable tensors that is ~2,700 kernel launches a step, which bound a GPU step that is
// itself bound by launches (docs/performance.md). The _foreach ops do the same updates in a
// few launches per group on CUDA (one per tensor, the same kernels, on the CPU).
#pragma once
#include <torch/torch.h>

namespace msam::train {

class MultiTensorAdamW : public torch::optim::AdamW {
 public:
  // As torch::optim::AdamW; amsgrad is not offered (no msam configuration uses it).
  explicit MultiTensorAdamW(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                            torch::optim::AdamWOptions defaults = {});

  // LibTorch's AdamW step for every parameter with a gradient: decoupled weight decay
  // p *= 1 − lr·wd, moments m = β₁m + (1−β₁)g, v = β₂v + (1−β₂)g², then
  // p −= lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε); the same state (checkpoints are unchanged).
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace msam::train
