// MultiStepLR with optional linear warm-up (LibTorch 1.13 ships only StepLR).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <vector>

namespace msam::train {

// Epoch-based learning-rate schedule over every parameter group of an optimizer:
//   lr_g(e) = base_g · warmup(e) · gamma^(number of milestones <= e)
//   warmup(e) = (e + 1) / (warmup_epochs + 1) for e < warmup_epochs, else 1.
// base_g is each group's lr when the scheduler is built (per-module multipliers stay).
// The optimizer's lrs are set for epoch 0 at construction and for epoch e+1 by step().
// A standalone class rather than a torch::optim::LRScheduler: the closed form must set the
// lrs at construction and on restore, and LRScheduler's setter is private.
class MultiStepLR {
 public:
  MultiStepLR(torch::optim::Optimizer& optimizer, std::vector<int64_t> milestones, double gamma,
              int64_t warmup_epochs = 0);

  void step();  // at the end of an epoch
  int64_t epoch() const { return epoch_; }
  double factor(int64_t epoch) const;  // lr multiplier at `epoch`
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  std::vector<double> current_lrs() const;

  // {"epoch", "base_lrs"}; loading sets the optimizer's lrs for the saved epoch. A state whose
  // group count differs from the optimizer's is an msam::Error.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);

 private:
  void apply();

  torch::optim::Optimizer& optimizer_;
  std::vector<int64_t> milestones_;
  double gamma_;
  int64_t warmup_epochs_;
  std::vector<double> base_lrs_;
  int64_t epoch_ = 0;
};

}  // namespace msam::train
