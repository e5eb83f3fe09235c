// The M-SAM trainer: config → prepared data → AdamW with per-module learning rates →
// MultiStepLR, the 11-iteration refinement loop with soft-Dice loss, validation each epoch,
// atomic checkpoints (latest + best), metrics CSV/JSONL and curves, and resume.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "msam/common/log.h"
#include "msam/data/cache.h"
#include "msam/data/split.h"
#include "msam/dist/gradient_reducer.h"
#include "msam/dist/process_group.h"
#include "msam/interaction/refinement.h"
#include "msam/model/msam.h"
#include "msam/train/config.h"
#include "msam/train/grad_scaler.h"
#include "msam/train/scheduler.h"

namespace msam::train {

// The network a run configuration describes.
model::MSAMConfig model_config(const Config& config);

// The preprocessing the run's `data` section asks for (spacing, patch size, minimum lesion
// size, what to do about an image/label geometry mismatch).
data::PreprocessSettings preprocess_settings(const Config& config);

// Cache entries of each split. Built by `prepare_run_data`.
struct RunData {
  data::Split split;
  std::vector<std::string> train, val, test;  // cache entry paths
  std::string cache_dir, split_file;
};

// Discovers the configured datasets, brings the preprocessed cache up to date (with
// `reader`, the ITK case reader; without one the cache must already be complete), and loads
// or creates the split over the cases that were prepared. Skipped and failed cases are
// logged as warnings with their reasons. With a `group`, each rank prepares its share of the
// cases (every rank-th), rank 0 writes the split and every rank returns the same RunData.
RunData prepare_run_data(const Config& config, const data::CaseReader& reader,
                         dist::ProcessGroup* group = nullptr);

// The run's device; for CUDA the GPU of this local rank.
torch::Device device_of(const Config& config, int local_rank = 0);

// Training and validation Dice (train_msam.py `get_dice_score`): prediction = logits >
// `threshold`, per-sample Dice averaged over the batch; samples with both masks empty are left
// out. The run's `loop.threshold`, so the Dice that picks best.safetensors scores the mask that
// evaluation scores; the reference's 0.5 on logits (not probabilities) is a slip kept for
// comparable numbers.
double mask_dice(const torch::Tensor& logits, const torch::Tensor& target, double threshold);
// (Σ per-sample Dice, samples counted) as a float64 tensor of 2 on the logits' device: what
// ranks holding parts of one batch add up to that batch's Dice.
torch::Tensor mask_dice_parts(const torch::Tensor& logits, const torch::Tensor& target,
                              double threshold);
// The same as a scalar tensor on the logits' device (NaN when every sample is empty on both
// sides), so that a training step need not wait for it.
torch::Tensor mask_dice_tensor(const torch::Tensor& logits, const torch::Tensor& target,
                               double threshold);

// Loss of one refinement iteration's full-size logits, computed in float32 or wider (float64
// logits stay float64).
torch::Tensor iteration_loss(const torch::Tensor& logits, const torch::Tensor& target,
                             LossKind kind);

// Scales every gradient of the optimiser's parameters by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖
// the L2 norm over all of them (torch.nn.utils.clip_grad_norm_), on their device: no host sync.
void clip_grad_norm(torch::optim::Optimizer& optimizer, double max_norm);

// The run's freeze policy: `model.freeze: encoder` freezes the image encoder's own weights
// (its LoRA, if any, trains); everything else trains.
void apply_freeze(model::MSAM& model, const Config& config);

// AdamW over the trainable parameters in the reference's groups (image encoder, LoRA, prompt
// encoder, mask decoder, adapter), each at `optim.lr` times its `lr_mult`.
std::unique_ptr<torch::optim::AdamW> make_optimizer(model::MSAM& model, const OptimConfig& optim);

// Everything one optimisation step needs besides the model, the batch and the optimiser.
struct StepSettings {
  interaction::RefinementOptions refinement;
  LossKind loss = LossKind::kDice;
  LossReduce reduce = LossReduce::kSum;
  at::ScalarType amp_dtype = at::kFloat;  // kBFloat16 / kHalf: CUDA autocast
  bool encoder_frozen = false;            // frozen base and no LoRA: encoder without autograd
  double clip_grad_norm = 0;              // > 0: clip the global gradient norm (unscaled)
};

struct StepOutput {
  torch::Tensor loss;  // scalar, on the model's device
  torch::Tensor iteration_losses;  // the summands of `loss`: every iteration's, or the last's
  torch::Tensor dice;  // reference Dice after the last iteration, scalar (may be NaN)
  torch::Tensor dice_parts;  // its mask_dice_parts
  bool stepped = true; // false: fp16 overflow, the optimiser step was skipped
};

// The step settings of a run configuration.
StepSettings step_settings(const Config& config);

// One training step as the reference: image encoder once, the refinement loop with clicks from
// `clicks` (the trainer's: simulated from `target`) and the loss of every iteration (or the
// last), backward through the whole loop, optimiser step through the grad scaler. No host
// synchronisation except the scaler's overflow check (fp16 only). `sync_gradients`, when
// given, runs between backward and the step (data parallelism: the gradient all-reduce, so
// that clipping and the fp16 overflow check see the global gradient on every rank). An
// undefined `image` (a rank whose share of the batch is empty) skips forward and backward.
StepOutput training_step(model::MSAM& model, const torch::Tensor& image,
                         const torch::Tensor& target, const StepSettings& settings,
                         const interaction::ClickSource& clicks,
                         torch::optim::Optimizer& optimizer, GradScaler& scaler,
                         const std::function<void()>& sync_gradients = {});

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  double lr = 0;
  double train_loss = 0, train_dice = 0;
  double val_loss = NAN, val_dice = NAN;
  double seconds = 0, samples_per_second = 0;
  int64_t skipped_steps = 0;  // fp16 overflow steps
};

struct TrainerOptions {
  bool resume = false;
  data::CaseReader reader;  // ITK reader for raw cases; may be empty when the cache is ready
  int64_t max_steps_per_epoch = 0;  // > 0: shorter epochs (tests)
  // Data parallelism: this process is one rank of the group (null = one process). The global
  // batch is split across the ranks; rank 0 alone writes checkpoints, logs and reports.
  std::shared_ptr<dist::ProcessGroup> group;
};

class Trainer {
 public:
  Trainer(Config config, std::string config_source, TrainerOptions options);
  // Trains from the current epoch to config.epochs; returns the per-epoch history.
  std::vector<EpochRecord> run();

  model::MSAM& model() { return model_; }
  const RunData& data() const { return data_; }
  // All-reduce time and volume so far (data parallelism; null in one process).
  const dist::GradientReducer* reducer() const { return reducer_.get(); }
  std::string latest_checkpoint() const;
  std::string best_checkpoint() const;

 private:
  // Trains, validates, checkpoints and reports one epoch.
  void run_epoch(int64_t epoch);
  EpochRecord train_epoch(int64_t epoch);
  std::pair<double, double> validate(int64_t epoch);  // (loss, dice)
  void save(const std::string& path, int64_t epochs_done);
  void write_reports() const;
  bool is_main() const { return !options_.group || options_.group->is_main(); }
  int rank() const { return options_.group ? options_.group->rank() : 0; }
  int world() const { return options_.group ? options_.group->size() : 1; }
  // Sums `values` over the ranks (a no-op in one process).
  void sum_over_ranks(torch::Tensor& values, const std::string& what);

  Config config_;
  std::string source_;
  TrainerOptions options_;
  std::unique_ptr<log::FileLog> file_log_;  // <output>/train.log
  torch::Device device_;
  RunData data_;
  model::MSAM model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<MultiStepLR> scheduler_;
  std::unique_ptr<GradScaler> scaler_;
  std::unique_ptr<dist::GradientReducer> reducer_;
  int64_t start_epoch_ = 0, global_step_ = 0;
  double best_val_dice_ = -1.0;
  std::vector<EpochRecord> history_;
};

}  // namespace msam::train
