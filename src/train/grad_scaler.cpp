#include "msam/train/grad_scaler.h"

#include "msam/common/error.h"

namespace msam::train {

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
  if (!(options_.init_scale > 0) || !(options_.growth_factor > 1) ||
      !(options_.backoff_factor > 0 && options_.backoff_factor < 1) ||
      options_.growth_interval < 1)
    throw Error(
        "GradScaler: needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 and "
        "growth_interval >= 1");
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return options_.enabled ? loss * scale_ : loss;
}

void GradScaler::unscale(torch::optim::Optimizer& optimizer) {
  if (!options_.enabled) return;
  if (stage_ != Stage::kReady)
    throw Error("GradScaler: unscale() called twice since the last update()");
  const double inverse = 1.0 / scale_;
  std::vector<torch::Tensor> finite;
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto g = p.mutable_grad();
      g.mul_(inverse);
      finite.push_back(torch::isfinite(g).all().to(torch::kCPU));
    }
  // One host sync for all gradients.
  found_inf_ = !finite.empty() && !torch::stack(finite).all().item<bool>();
  stage_ = Stage::kUnscaled;
}

bool GradScaler::step(torch::optim::Optimizer& optimizer) {
  if (!options_.enabled) {
    optimizer.step();
    return true;
  }
  if (stage_ == Stage::kStepped) throw Error("GradScaler: step() called twice without update()");
  if (stage_ == Stage::kReady) unscale(optimizer);
  stage_ = Stage::kStepped;
  if (found_inf_) {
    ++skipped_steps_;
    return false;
  }
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  if (stage_ != Stage::kStepped) throw Error("GradScaler: update() called without step()");
  if (found_inf_) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  stage_ = Stage::kReady;
}

nlohmann::json GradScaler::state() const {
  return {{"scale", scale_}, {"growth_tracker", growth_tracker_}, {"skipped_steps", skipped_steps_}};
}

void GradScaler::load_state(const nlohmann::json& state) {
  try {
    const auto scale = state.at("scale").get<double>();
    const auto tracker = state.at("growth_tracker").get<int64_t>();
    if (!(scale > 0) || tracker < 0) throw Error("GradScaler state: invalid scale or tracker");
    scale_ = scale;
    growth_tracker_ = tracker;
    skipped_steps_ = state.value("skipped_steps", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("GradScaler state: ") + e.what());
  }
  stage_ = Stage::kReady;
}

}  // namespace msam::train
