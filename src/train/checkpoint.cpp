#include "msam/train/checkpoint.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/io/safetensors.h"
#include "msam/model/state_dict.h"

namespace msam::train {
namespace {

std::string new_step_id() {
  std::random_device rd;
  return std::to_string(rd()) + "-" + std::to_string(rd());
}

}  // namespace

std::string optimizer_path(const std::string& checkpoint_path) {
  const std::string suffix = ".safetensors";
  std::string base = checkpoint_path;
  if (base.size() > suffix.size() &&
      base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
    base.resize(base.size() - suffix.size());
  return base + ".optim.safetensors";
}

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::AdamW* optimizer, const CheckpointMeta& meta) {
  const std::string step_id = new_step_id();
  nlohmann::json j = {{"format", "msam-checkpoint-1"},
                      {"epoch", meta.epoch},
                      {"global_step", meta.global_step},
                      {"best_val_dice", meta.best_val_dice},
                      {"step_id", step_id},
                      {"extra", meta.extra}};
  std::map<std::string, std::string> md{{"msam", j.dump()}, {"config", meta.config_yaml}};
  if (!meta.model_config.empty()) md["model_config"] = meta.model_config;
  // Optimiser first: a crash between the two writes leaves an optimiser file whose step_id
  // matches no model file, which load_optimizer_state reports instead of mixing states.
  if (optimizer) {
    std::map<std::string, at::Tensor> t;
    const auto& state = optimizer->state();
    int64_t index = 0;
    for (const auto& group : optimizer->param_groups()) {
      for (const auto& p : group.params()) {
        auto it = state.find(compat::optimizer_state_key(state, p));
        if (it != state.end()) {
          const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
          const std::string k = "param." + std::to_string(index);
          t[k + ".exp_avg"] = s.exp_avg();
          t[k + ".exp_avg_sq"] = s.exp_avg_sq();
          t[k + ".step"] = torch::tensor(s.step(), torch::kLong);
        }
        ++index;
      }
    }
    io::write_safetensors(optimizer_path(path), t,
                          {{"step_id", step_id}, {"num_params", std::to_string(index)}});
  }
  io::write_safetensors(path, model::state_dict(model), md);
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  const auto metadata = io::read_safetensors_metadata(path);
  auto it = metadata.find("msam");
  if (it == metadata.end())
    throw file_error(path, "not an msam training checkpoint (no 'msam' metadata)");
  CheckpointMeta meta;
  try {
    auto j = nlohmann::json::parse(it->second);
    meta.epoch = j.at("epoch").get<int64_t>();
    meta.global_step = j.at("global_step").get<int64_t>();
    meta.best_val_dice = j.at("best_val_dice").get<double>();
    meta.extra = j.at("extra").get<std::map<std::string, std::string>>();
    meta.extra["step_id"] = j.at("step_id").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("corrupt checkpoint metadata: ") + e.what());
  }
  if (metadata.count("config")) meta.config_yaml = metadata.at("config");
  if (metadata.count("model_config")) meta.model_config = metadata.at("model_config");
  return meta;
}

std::optional<Config> recorded_run_config(const std::string& path) {
  if (path.size() < 12 || path.compare(path.size() - 12, 12, ".safetensors") != 0) return {};
  const auto metadata = io::read_safetensors_metadata(path);
  const auto it = metadata.find("config");
  if (!metadata.count("msam") || it == metadata.end()) return {};
#if MSAM_HAVE_YAML
  return parse_config(YAML::Load(it->second), path + " (its recorded run configuration)");
#else
  return {};
#endif
}

void load_optimizer_state(const std::string& path, torch::optim::AdamW& optimizer) {
  const auto meta = read_checkpoint_meta(path);
  const std::string opath = optimizer_path(path);
  if (!std::filesystem::exists(opath))
    throw file_error(opath, "optimiser state missing beside checkpoint " + path);
  auto f = io::read_safetensors(opath);
  if (!f.metadata.count("step_id") || f.metadata.at("step_id") != meta.extra.at("step_id"))
    throw file_error(opath, "optimiser state belongs to a different save than " + path +
                                " (interrupted write?)");
  int64_t index = 0;
  auto& state = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      const std::string k = "param." + std::to_string(index++);
      if (!f.contains(k + ".exp_avg")) continue;
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      const auto& m = f.at(k + ".exp_avg");
      if (!m.sizes().equals(p.sizes()))
        throw file_error(opath, "moment " + k + " has the wrong shape for its parameter");
      s->exp_avg(m.to(p.device(), p.scalar_type()).clone());
      s->exp_avg_sq(f.at(k + ".exp_avg_sq").to(p.device(), p.scalar_type()).clone());
      s->step(f.at(k + ".step").item<int64_t>());
      state[compat::optimizer_state_key(state, p)] = std::move(s);
    }
  }
  if (f.metadata.count("num_params") && std::stoll(f.metadata.at("num_params")) != index)
    throw file_error(opath, "optimiser state has " + f.metadata.at("num_params") +
                                " parameters but the optimiser has " + std::to_string(index));
}

}  // namespace msam::train
