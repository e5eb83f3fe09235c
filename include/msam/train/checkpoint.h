// Training checkpoints in msam's format: `<name>.safetensors` (model weights + JSON metadata)
// and `<name>.optim.safetensors` beside it (AdamW moments). Both are written atomically and
// carry the same `step_id`, so a resume never combines halves of two different saves.
#pragma once
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <map>
#include <optional>
#include <string>

#include "msam/train/config.h"

namespace msam::train {

struct CheckpointMeta {
  int64_t epoch = 0;            // epochs completed
  int64_t global_step = 0;      // optimiser steps taken
  double best_val_dice = -1.0;  // best validation Dice so far (-1: none yet)
  std::string config_yaml;      // the resolved run configuration
  std::string model_config;     // model::MSAMConfig::to_json(), for inference
  std::map<std::string, std::string> extra;  // scheduler, grad scaler, RNG states (text)
};

// Writes model (and, when `optimizer` is given, optimiser) state. `path` ends in .safetensors.
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::AdamW* optimizer, const CheckpointMeta& meta);

// Reads only the metadata of a checkpoint written by save_checkpoint.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Restores the optimiser moments saved beside `path` into `optimizer`, whose parameter groups
// must be built the same way as when saving (same parameters, same order). Errors name the file.
void load_optimizer_state(const std::string& path, torch::optim::AdamW& optimizer);

std::string optimizer_path(const std::string& checkpoint_path);

// The run configuration a checkpoint of `msam train` records (its preprocessing among it:
// data.spacing, the datasets' modality); none for other weight files (a reference .pth, a
// converted checkpoint).
std::optional<Config> recorded_run_config(const std::string& checkpoint_path);

}  // namespace msam::train
