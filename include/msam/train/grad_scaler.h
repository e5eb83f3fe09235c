// Dynamic loss scaling for fp16 training (LibTorch has no GradScaler), with the semantics
// of torch.cuda.amp.GradScaler, written with plain tensor ops so that it runs anywhere.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

namespace msam::train {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // consecutive finite steps before the scale grows
  bool enabled = true;             // disabled: scale() is the identity, step() always steps
};

// Per iteration: scale(loss).backward(); step(optimizer); update().
class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  torch::Tensor scale(const torch::Tensor& loss) const;
  // Divides the optimizer's gradients by the scale (in place) and records whether any is
  // inf/nan. At most once between updates; step() calls it when the caller did not (call it
  // yourself before clipping gradients).
  void unscale(torch::optim::Optimizer& optimizer);
  // Runs optimizer.step() unless the unscaled gradients hold an inf/nan; returns whether it
  // stepped. A skipped step is counted (skipped_steps()) for the caller to log.
  bool step(torch::optim::Optimizer& optimizer);
  // Backs the scale off after an overflow, grows it after growth_interval finite steps.
  void update();

  double scale_value() const { return scale_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  bool enabled() const { return options_.enabled; }

  // {"scale", "growth_tracker", "skipped_steps"}.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);

 private:
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_steps_ = 0;
  enum class Stage { kReady, kUnscaled, kStepped } stage_ = Stage::kReady;
  bool found_inf_ = false;
};

}  // namespace msam::train
