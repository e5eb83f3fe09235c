#include "msam/train/scheduler.h"

#include <algorithm>
#include <cmath>

#include "msam/common/error.h"

namespace msam::train {

MultiStepLR::MultiStepLR(torch::optim::Optimizer& optimizer, std::vector<int64_t> milestones,
                         double gamma, int64_t warmup_epochs)
    : optimizer_(optimizer),
      milestones_(std::move(milestones)),
      gamma_(gamma),
      warmup_epochs_(warmup_epochs) {
  if (!std::is_sorted(milestones_.begin(), milestones_.end()))
    throw Error("MultiStepLR: milestones must be increasing");
  if (!(gamma_ > 0)) throw Error("MultiStepLR: gamma must be > 0");
  if (warmup_epochs_ < 0) throw Error("MultiStepLR: warmup_epochs must be >= 0");
  for (const auto& group : optimizer_.param_groups()) base_lrs_.push_back(group.options().get_lr());
  apply();
}

double MultiStepLR::factor(int64_t epoch) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) -
                      milestones_.begin();
  double f = std::pow(gamma_, static_cast<double>(passed));
  if (epoch < warmup_epochs_)
    f *= static_cast<double>(epoch + 1) / static_cast<double>(warmup_epochs_ + 1);
  return f;
}

void MultiStepLR::step() {
  ++epoch_;
  apply();
}

std::vector<double> MultiStepLR::current_lrs() const {
  std::vector<double> lrs;
  for (const auto& group : optimizer_.param_groups()) lrs.push_back(group.options().get_lr());
  return lrs;
}

void MultiStepLR::apply() {
  const double f = factor(epoch_);
  auto& groups = optimizer_.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(base_lrs_[g] * f);
}

nlohmann::json MultiStepLR::state() const {
  return {{"epoch", epoch_}, {"base_lrs", base_lrs_}};
}

void MultiStepLR::load_state(const nlohmann::json& state) {
  try {
    auto base = state.at("base_lrs").get<std::vector<double>>();
    if (base.size() != optimizer_.param_groups().size())
      throw Error("MultiStepLR state: " + std::to_string(base.size()) +
                  " parameter groups saved, the optimizer has " +
                  std::to_string(optimizer_.param_groups().size()));
    const auto epoch = state.at("epoch").get<int64_t>();
    if (epoch < 0) throw Error("MultiStepLR state: negative epoch");
    base_lrs_ = std::move(base);
    epoch_ = epoch;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("MultiStepLR state: ") + e.what());
  }
  apply();
}

}  // namespace msam::train
