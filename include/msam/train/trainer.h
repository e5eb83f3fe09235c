// The M-SAM trainer: config → prepared data (run_data.h) → AdamW with per-module learning
// rates → MultiStepLR, the refinement loop's training steps (training_step.h), validation,
// atomic checkpoints (latest + best), metrics CSV/JSONL and curves, resume, data parallelism.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "msam/common/log.h"
#include "msam/dist/gradient_reducer.h"
#include "msam/dist/process_group.h"
#include "msam/model/msam.h"
#include "msam/train/config.h"
#include "msam/train/grad_scaler.h"
#include "msam/train/run_data.h"
#include "msam/train/scheduler.h"
#include "msam/train/step_graph.h"
#include "msam/train/training_step.h"

namespace msam::train {

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
  // The AdamW moments go beside it only with_optimizer (latest: what a resume needs).
  void save(const std::string& path, int64_t epochs_done, bool with_optimizer = true);
  void write_reports() const;
  bool is_main() const { return !options_.group || options_.group->is_main(); }
  int rank() const { return options_.group ? options_.group->rank() : 0; }
  int world() const { return options_.group ? options_.group->size() : 1; }
  // Sums `values` (any device) over the ranks in place (a no-op in one process).
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
  std::unique_ptr<TrainingStepGraph> step_graph_;  // CUDA, where a step can be replayed
  int64_t start_epoch_ = 0, global_step_ = 0;
  double best_val_dice_ = -1.0;
  std::vector<EpochRecord> history_;
};

}  // namespace msam::train
