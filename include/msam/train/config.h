// The run configuration: one YAML file describes a training run. Defaults reproduce the
// reference (train_msam.py with SAM-Med3D-turbo's ViT-B, docs/design.md §3.5).
#pragma once
#include <c10/core/ScalarType.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "msam/data/augment.h"
#include "msam/interaction/click_protocol.h"
#include "msam/model/architecture.h"

#if MSAM_HAVE_YAML
#include <yaml-cpp/yaml.h>
#endif

namespace msam::train {

enum class Modality { kCT, kMR };  // CT intensities are clamped to [-1000, 1000]
enum class LossKind { kDice, kDiceBce };
enum class LossReduce { kSum, kLast };  // over refinement iterations
enum class Freeze { kEncoder, kNone };  // kEncoder: the encoder's own weights; LoRA trains
enum class Precision { kFp32, kBf16, kFp16 };
enum class DeviceKind { kCpu, kCuda };

// One dataset: exactly one of `root` (imagesTr/ + labelsTr/, a dataset.json, or file
// patterns), `dataset_json` (MSD) or `pairs` (data::DatasetSpec says how each is read).
struct DatasetSpec {
  // Prefix of its case ids ("<name>/<case>"), which a saved split names; empty = the folder's
  // name (or "pairs"). Set it when the split must hold wherever the data is kept.
  std::string name;
  std::string root;
  std::string dataset_json;
  std::vector<std::pair<std::string, std::string>> pairs;  // (image, label) paths
  // Under `root`, "{case}" standing for each case: "{case}/{case}_flair.nii.gz" (BraTS).
  std::string image_pattern, label_pattern;
  // One channel of multi-channel scans: an index or a name from the root's dataset.json.
  std::string channel;
  // Label values that form the foreground; empty = the label must be a 0/1 mask.
  std::vector<int64_t> target_labels;
  Modality modality = Modality::kCT;
};

struct SplitConfig {
  std::string file;  // split JSON; empty = <output>/split.json
  int64_t seed = 0;
  std::array<double, 3> ratios{0.6, 0.2, 0.2};  // train, val, test
};

struct DataConfig {
  std::vector<DatasetSpec> datasets;
  std::string cache_dir;  // preprocessed volumes; empty = <output>/cache
  SplitConfig split;
  std::optional<std::array<double, 3>> spacing;  // mm; absent = keep the native spacing
  int64_t min_label_voxels = 1000;  // cases with <= this many foreground voxels are skipped
  // Image and label of one case whose spacing, origin or direction differ: false = the case
  // fails (a misregistered label would train on the wrong voxels), true = the image's
  // geometry is used for the label too (the reference silently copies one onto the other).
  bool copy_image_geometry = false;
  int64_t roi = 128;
  // Training augmentation, its keys directly under `data:` (random_flip, rotation, zoom,
  // elastic, elastic_spacing, gamma, intensity_scale, intensity_shift, bias_field, distractor,
  // distractor_gap; data::AugmentOptions says what each does): flips on, as in the
  // reference's trainer, the rest off.
  data::AugmentOptions augment{/*random_flips=*/true};
  int64_t workers = 2;
  int64_t prefetch = 2;
};

// The network and how it starts. `architecture` is model::MSAMConfig, whose keys
// (model::visit) sit directly under `model:` (encoder, prompt_width, lora_rank, adapter,
// decoder, mask_in_chans, dense_pe_axes); the default is the reference's ViT-B with LoRA 4.
struct ModelConfig {
  model::MSAMConfig architecture = reference_architecture();
  std::string checkpoint;  // .pth or .safetensors to start from; empty = random init
  Freeze freeze = Freeze::kEncoder;

  // M-SAM's network as train_msam.py builds it: SAM-Med3D-turbo's ViT-B, LoRA of rank 4 on
  // q and v. `dense_pe_axes: aligned` only for models trained from scratch: pretrained
  // weights expect `reference`.
  static model::MSAMConfig reference_architecture() {
    model::MSAMConfig m;
    m.encoder.lora_rank = 4;
    return m;
  }
};

struct LoopConfig {
  int64_t iterations = 11;  // 1 click + 10 refinements
  interaction::ClickProtocol protocol = interaction::ClickProtocol::kRandom;
  bool multi_click = false;  // feed all clicks so far instead of only the newest
  // Mask = logits > threshold: the mask whose errors the next click corrects and whose Dice
  // picks best.safetensors. A logit: 0 is probability 0.5, a negative value a lower probability
  // (any finite value is valid); the reference's 0.5 is a slip its weights carry.
  double threshold = interaction::kReferenceClickThreshold;
  // Training only: the probability per sample and iteration after the first that a ball of the
  // previous prediction is made wrong before the click (interaction/mask_perturbation.h).
  // 0: the reference's loop.
  double mask_perturbation = 0;
};

struct LossConfig {
  LossKind kind = LossKind::kDice;  // what MONAI 1.2 DiceCE with one channel computes
  LossReduce reduce = LossReduce::kSum;
};

// Learning-rate multipliers per module (reference: encoder/LoRA/adapter at the base lr,
// prompt encoder and mask decoder at 0.1x).
struct LrMultipliers {
  double image_encoder = 1.0;
  double lora = 1.0;
  double adapter = 1.0;
  double prompt_encoder = 0.1;
  double mask_decoder = 0.1;
};

struct OptimConfig {  // AdamW
  double lr = 8e-4;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.1;
  LrMultipliers lr_mult;
  // > 0: scale the gradients down to this global L2 norm before each step (the reference does
  // not clip; 0 = off).
  double clip_grad_norm = 0;
};

struct ScheduleConfig {  // MultiStepLR, stepped once per epoch
  std::vector<int64_t> milestones{120, 180};
  double gamma = 0.1;
  int64_t warmup_epochs = 0;
};

// Data-parallel training (README "Training on several GPUs or nodes"): how long a rank waits
// for the others, and the size of the gradient buckets all-reduced together.
struct DistConfig {
  double timeout = 600;  // seconds: a rank that died or hangs fails the others after this
  double bucket_mb = 25;  // MiB of flattened gradients per all-reduce (DDP's default)
};

struct Config {
  DataConfig data;
  ModelConfig model;
  LoopConfig loop;
  LossConfig loss;
  OptimConfig optim;
  ScheduleConfig schedule;
  DistConfig dist;
  Precision precision = Precision::kFp32;
  DeviceKind device = DeviceKind::kCpu;
  int64_t batch_size = 2;
  int64_t epochs = 200;
  int64_t val_every = 1;
  // latest.safetensors after every save_every-th epoch and the last (best.safetensors after
  // every validation that improves): a large model's checkpoint with AdamW's state (ViT-B:
  // 1.4 GB) can take longer to write than a short epoch trains. A resumed run repeats at most
  // save_every - 1 epochs.
  int64_t save_every = 1;
  std::string output = "runs/msam";
  int64_t seed = 2023;
  int64_t threads = 0;  // 0 = LibTorch's default
};

// Value checks that need no YAML (also used after building a Config in code). Errors name
// the key, e.g. "run.yaml: optim.lr: must be > 0, got -1".
void validate(const Config& config, const std::string& source);

const char* name(Precision p);
// "fp32", "bf16" or "fp16"; anything else throws msam::Error naming `source`.
Precision parse_precision(const std::string& text, const std::string& source);
// The autocast dtype of a precision: kFloat (no autocast), kBFloat16 or kHalf.
c10::ScalarType amp_dtype(Precision p);

#if MSAM_HAVE_YAML
// Reads and validates a run file, applying `overrides` ("a.b=c") first.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Converts and validates a parsed document. `source` names it in errors (a file path).
Config parse_config(const YAML::Node& root, const std::string& source);

// Sets `a.b.c` in `root` to `value` parsed as YAML ("1e-4", "[1, 2]", "cuda", "" = null),
// creating maps on the way. A numeric component indexes a list (data.datasets.0.root=...).
void apply_override(YAML::Node& root, const std::string& assignment);

// The fully resolved config; parse_config(YAML::Load(to_yaml(c))) gives c back.
std::string to_yaml(const Config& config);
#endif

}  // namespace msam::train
