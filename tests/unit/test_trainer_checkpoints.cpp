// When the trainer writes its checkpoints (save_every, best without the optimiser's moments)
// and what a resumed run keeps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixtures.h"
#include "msam/train/checkpoint.h"
#include "msam/train/trainer.h"
#include "training_fixtures.h"

namespace fs = std::filesystem;
using namespace msam;

namespace {

// Four synthetic cases (2 train, 1 val, 1 test), 32³ crops, one step an epoch, validation
// after every epoch.
struct TinyRun {
  train::Config config;
  train::TrainerOptions options;

  TinyRun(const std::string& dir, int64_t epochs, int64_t save_every) {
    train::DatasetSpec d;
    d.name = "synth";
    d.pairs = test::synthetic_source_pairs(dir + "/sources", 4);
    config.data.datasets = {d};
    config.data.cache_dir = dir + "/cache";
    config.data.split.file = dir + "/split.json";
    config.data.split.ratios = {0.5, 0.25, 0.25};
    config.data.spacing = std::array<double, 3>{1.5, 1.5, 1.5};
    config.data.min_label_voxels = 20;
    config.data.roi = 32;
    config.data.workers = 1;
    config.model.architecture = test::micro_model_config();
    config.model.freeze = train::Freeze::kNone;
    config.loop.iterations = 2;
    config.optim.lr = 1e-3;
    config.batch_size = 1;
    config.epochs = epochs;
    config.save_every = save_every;
    config.val_every = 1;
    config.output = dir + "/run";
    config.threads = 1;
    options.reader = test::write_synthetic_sources(dir + "/sources", 4, 5);
    options.max_steps_per_epoch = 1;
  }

  void run() {
    train::Trainer trainer(config, "test", options);
    trainer.run();
  }
  std::string file(const std::string& name) const { return config.output + "/" + name; }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(TrainerCheckpoints, LatestIsWrittenEverySaveEveryEpochsAndAfterTheLast) {
  TinyRun r(test::temp_dir("save_every"), 5, 2);
  r.run();
  // Epochs 2 and 4 by the interval, 5 as the last; 1 and 3 not.
  const auto log = read_text(r.file("train.log"));
  for (int e = 1; e <= 5; ++e) {
    const auto at = log.find("epoch " + std::to_string(e) + ": train loss");
    ASSERT_NE(at, std::string::npos) << log;
    const auto line = log.substr(at, log.find('\n', at) - at);
    EXPECT_EQ(line.find("| saved") != std::string::npos, e % 2 == 0 || e == 5) << line;
  }
  EXPECT_EQ(train::read_checkpoint_meta(r.file("latest.safetensors")).epoch, 5);
  EXPECT_TRUE(fs::exists(r.file("latest.optim.safetensors")));
  // best.safetensors holds weights and record; the moments a resume needs are latest's.
  EXPECT_TRUE(fs::exists(r.file("best.safetensors")));
  EXPECT_FALSE(fs::exists(r.file("best.optim.safetensors")));
}

TEST(TrainerCheckpoints, AResumedRunKeepsABestCheckpointNewerThanTheLatest) {
  TinyRun r(test::temp_dir("save_every_resume"), 2, 2);
  // Validation masks at logit 10: empty, Dice 0 recorded in latest.safetensors. After the
  // resume at logit -10 the masks cover the crop: every epoch's Dice beats that record.
  r.config.loop.threshold = 10;
  r.run();
  // As if a later epoch had validated better than any epoch after it will and the run had
  // stopped before its next latest.safetensors: best.safetensors records a validation Dice
  // (above 1, so that no epoch reaches it) that the latest checkpoint does not know of.
  {
    auto meta = train::read_checkpoint_meta(r.file("best.safetensors"));
    meta.epoch = 3;
    meta.best_val_dice = 1.5;
    train::save_checkpoint(r.file("best.safetensors"), *test::tiny_model(3), nullptr, meta);
  }
  r.config.epochs = 4;
  r.config.loop.threshold = -10;
  r.options.resume = true;
  r.run();
  EXPECT_EQ(train::read_checkpoint_meta(r.file("latest.safetensors")).epoch, 4);
  const auto best = train::read_checkpoint_meta(r.file("best.safetensors"));
  EXPECT_EQ(best.epoch, 3);
  EXPECT_EQ(best.best_val_dice, 1.5);
}
