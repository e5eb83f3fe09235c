// Reading run files needs yaml-cpp (optional for the core, present on the development machines).
#if MSAM_HAVE_YAML
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/train/config.h"
#include "msam/train/run_data.h"
#include "msam/train/training_step.h"

using namespace msam;
using namespace msam::train;

namespace {

const char* kMinimal = "data:\n  datasets:\n    - root: /data/KiTS23\n      target_labels: [2]\n";

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = test::temp_dir("config") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The message of the msam::Error that loading `text` raises ("" if none).
std::string load_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  const std::string path = write_file("run.yaml", text);
  try {
    load_config(path, overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' lacks '" << part << "'";
}

}  // namespace

TEST(TrainConfig, DefaultsReproduceTheReference) {
  const Config c = parse_config(YAML::Load(kMinimal), "min.yaml");
  ASSERT_EQ(c.data.datasets.size(), 1u);
  EXPECT_EQ(c.data.datasets[0].root, "/data/KiTS23");
  EXPECT_EQ(c.data.datasets[0].target_labels, std::vector<int64_t>{2});
  EXPECT_EQ(c.data.datasets[0].modality, Modality::kCT);
  EXPECT_EQ(c.data.min_label_voxels, 1000);
  EXPECT_FALSE(c.data.copy_image_geometry);
  EXPECT_EQ(c.data.roi, 128);
  EXPECT_EQ(c.data.split.ratios, (std::array<double, 3>{0.6, 0.2, 0.2}));
  EXPECT_FALSE(c.data.spacing.has_value());
  EXPECT_EQ(c.model.architecture.encoder.embed_dim, 768);
  EXPECT_EQ(c.model.architecture.encoder.depth, 12);
  EXPECT_EQ(c.model.architecture.encoder.num_heads, 12);
  EXPECT_EQ(c.model.architecture.encoder.global_attn_indexes, (std::vector<int64_t>{2, 5, 8, 11}));
  EXPECT_EQ(c.model.architecture.encoder.window_size, 14);
  EXPECT_EQ(c.model.architecture.encoder.patch_size, 16);
  EXPECT_EQ(c.model.architecture.width(), 384);
  EXPECT_EQ(c.model.architecture.encoder.lora_rank, 4);
  EXPECT_EQ(c.model.architecture.adapter_heads, 6);
  EXPECT_EQ(c.model.architecture.decoder_heads, 8);
  EXPECT_EQ(c.model.architecture.decoder_mlp_dim, 2048);
  EXPECT_EQ(c.model.freeze, Freeze::kEncoder);
  EXPECT_EQ(c.loop.iterations, 11);
  EXPECT_EQ(c.loop.protocol, interaction::ClickProtocol::kRandom);
  EXPECT_FALSE(c.loop.multi_click);
  EXPECT_EQ(c.loop.threshold, 0.5);
  EXPECT_EQ(c.loss.kind, LossKind::kDice);
  EXPECT_EQ(c.loss.reduce, LossReduce::kSum);
  EXPECT_EQ(c.optim.lr, 8e-4);
  EXPECT_EQ(c.optim.betas, (std::array<double, 2>{0.9, 0.999}));
  EXPECT_EQ(c.optim.weight_decay, 0.1);
  EXPECT_EQ(c.optim.clip_grad_norm, 0.0);
  EXPECT_EQ(c.optim.lr_mult.adapter, 1.0);
  EXPECT_EQ(c.optim.lr_mult.lora, 1.0);
  EXPECT_EQ(c.optim.lr_mult.prompt_encoder, 0.1);
  EXPECT_EQ(c.optim.lr_mult.mask_decoder, 0.1);
  EXPECT_EQ(c.schedule.milestones, (std::vector<int64_t>{120, 180}));
  EXPECT_EQ(c.schedule.gamma, 0.1);
  EXPECT_EQ(c.schedule.warmup_epochs, 0);
  EXPECT_EQ(c.precision, Precision::kFp32);
  EXPECT_EQ(c.epochs, 200);
  EXPECT_EQ(c.batch_size, 2);
}

TEST(TrainConfig, UnknownKeyNamesThePathAndSuggestsTheNearest) {
  const std::string e = load_error(std::string(kMinimal) + "optim:\n  lrr: 0.001\n");
  EXPECT_TRUE(contains(e, "run.yaml"));
  EXPECT_TRUE(contains(e, "unknown key 'optim.lrr'"));
  EXPECT_TRUE(contains(e, "did you mean 'optim.lr'?"));

  const std::string nested =
      load_error(std::string(kMinimal) + "model:\n  encoder:\n    embeddim: 96\n");
  EXPECT_TRUE(contains(nested, "'model.encoder.embeddim'"));
  EXPECT_TRUE(contains(nested, "did you mean 'model.encoder.embed_dim'?"));

  const std::string in_list = load_error(
      "data:\n  datasets:\n    - root: /x\n      modalty: mr\n");
  EXPECT_TRUE(contains(in_list, "'data.datasets.0.modalty'"));
  EXPECT_TRUE(contains(in_list, "did you mean 'data.datasets.0.modality'?"));

  const std::string top = load_error(std::string(kMinimal) + "epoch: 3\n");
  EXPECT_TRUE(contains(top, "did you mean 'epochs'?"));
  // Far from every key: no guess, but the valid keys are listed.
  const std::string far = load_error(std::string(kMinimal) + "loss:\n  zzzzzzzzzz: 1\n");
  EXPECT_FALSE(contains(far, "did you mean"));
  EXPECT_TRUE(contains(far, "kind, reduce"));
}

TEST(TrainConfig, WrongTypesNameTheKeyAndFile) {
  const std::string base = kMinimal;
  EXPECT_TRUE(contains(load_error(base + "optim:\n  lr: fast\n"), "run.yaml: optim.lr: expected a number, got 'fast'"));
  EXPECT_TRUE(contains(load_error(base + "epochs: 2.5\n"), "epochs: expected an integer"));
  EXPECT_TRUE(contains(load_error(base + "loop:\n  multi_click: maybe\n"), "loop.multi_click: expected true or false"));
  EXPECT_TRUE(contains(load_error(base + "loop:\n  protocol: centre\n"), "'centre' is not one of random, fnfp5050, center"));
  EXPECT_TRUE(contains(load_error(base + "model: 3\n"), "model: expected a map"));
  EXPECT_TRUE(contains(load_error(base + "schedule:\n  milestones: 120\n"), "schedule.milestones: expected a list of integers"));
  EXPECT_TRUE(contains(load_error(base, {"data.split.ratios=[0.5, 0.5]"}), "data.split.ratios: expected a list of 3 numbers"));
  EXPECT_TRUE(contains(load_error(base + "optim:\n  betas: [0.9]\n"), "optim.betas: expected a list of 2 numbers"));
  EXPECT_TRUE(contains(load_error("optim: [\n"), "run.yaml: not valid YAML"));
}

TEST(TrainConfig, CopyImageGeometryReachesThePreprocessing) {
  EXPECT_EQ(preprocess_settings(parse_config(YAML::Load(kMinimal), "min.yaml")).on_geometry_mismatch,
            msam::data::GeometryMismatch::Error);
  const Config c =
      parse_config(YAML::Load(std::string(kMinimal) + "  copy_image_geometry: true\n"), "run.yaml");
  EXPECT_TRUE(c.data.copy_image_geometry);
  EXPECT_EQ(preprocess_settings(c).on_geometry_mismatch, msam::data::GeometryMismatch::CopyImageGeometry);
  EXPECT_TRUE(contains(load_error(kMinimal, {"data.copy_image_geometry=sometimes"}),
                       "data.copy_image_geometry: expected true or false"));
  EXPECT_TRUE(contains(load_error(kMinimal, {"data.copy_image_geometri=true"}),
                       "did you mean 'data.copy_image_geometry'?"));
}

TEST(TrainConfig, ImpossibleValuesNameTheKey) {
  const std::string base = kMinimal;
  EXPECT_TRUE(contains(load_error(base + "optim:\n  lr: -0.1\n"), "run.yaml: optim.lr: must be > 0"));
  EXPECT_TRUE(contains(load_error(base, {"optim.clip_grad_norm=-1"}), "optim.clip_grad_norm: must be >= 0"));
  EXPECT_TRUE(contains(load_error(base, {"data.split.ratios=[0.5, 0.2, 0.2]"}), "data.split.ratios: train/val/test ratios must sum to 1"));
  EXPECT_TRUE(contains(load_error(base + "model:\n  encoder:\n    embed_dim: 100\n"), "model.encoder.embed_dim: 100 is not divisible by model.encoder.num_heads (12)"));
  EXPECT_TRUE(contains(load_error(base + "model:\n  encoder:\n    depth: 4\n"), "model.encoder.global_attn_indexes: block 5 is outside 0..3"));
  EXPECT_TRUE(contains(load_error(base + "model:\n  prompt_width: 100\n"), "model.prompt_width"));
  EXPECT_TRUE(contains(load_error(base + "model:\n  adapter:\n    heads: 5\n"), "model.adapter.heads"));
  EXPECT_TRUE(contains(load_error(base + "model:\n  checkpoint: weights.bin\n"), "model.checkpoint"));
  EXPECT_TRUE(contains(load_error(base, {"data.roi=96"}), "data.roi"));
  EXPECT_TRUE(contains(load_error(base + "schedule:\n  milestones: [180, 120]\n"), "schedule.milestones: must be strictly increasing"));
  EXPECT_TRUE(contains(load_error(base + "precision: bf16\n"), "precision: bf16 needs device: cuda"));
  EXPECT_TRUE(contains(load_error(base + "batch_size: 0\n"), "batch_size: must be > 0"));
  EXPECT_TRUE(contains(load_error(base + "save_every: 0\n"), "save_every: must be > 0"));
  EXPECT_TRUE(contains(load_error("data:\n  datasets: []\n"), "data.datasets: at least one dataset is required"));
  EXPECT_TRUE(contains(load_error("data:\n  datasets:\n    - root: /a\n      dataset_json: /a/dataset.json\n"), "data.datasets.0: give exactly one of root, dataset_json or pairs"));
  EXPECT_TRUE(contains(load_error("data:\n  datasets:\n    - root: /a\n      target_labels: [0]\n"), "data.datasets.0.target_labels"));
  EXPECT_TRUE(contains(load_error("data:\n  datasets:\n    - root: /a\n      name: a/b\n"), "data.datasets.0.name: must not contain '/'"));
  EXPECT_TRUE(contains(load_error(base, {"data.intensity_scale=1"}), "data.intensity_scale: must be in [0, 1)"));
  EXPECT_TRUE(contains(load_error(base, {"data.intensity_shift=-0.1"}), "data.intensity_shift: must be >= 0"));
  EXPECT_TRUE(contains(load_error(base, {"data.rotation=181"}), "data.rotation: must be in [0, 180] degrees"));
  EXPECT_TRUE(contains(load_error(base, {"data.zoom=1"}), "data.zoom: must be in [0, 1)"));
  EXPECT_TRUE(contains(load_error(base, {"data.gamma=-0.5"}), "data.gamma: must be >= 0"));
  EXPECT_TRUE(contains(load_error(base, {"data.elastic=-1"}), "data.elastic: must be >= 0 mm"));
  EXPECT_TRUE(contains(load_error(base, {"data.bias_field=-0.1"}), "data.bias_field: must be >= 0"));
  EXPECT_TRUE(contains(load_error(base, {"data.elastic_spacing=0"}), "data.elastic_spacing: must be > 0 mm"));
  EXPECT_TRUE(contains(load_error(base, {"data.distractor=1.5"}), "data.distractor: must be a probability in [0, 1]"));
  EXPECT_TRUE(contains(load_error(base, {"data.distractor_gap=-1"}), "data.distractor_gap: must be >= 0 mm"));
  EXPECT_TRUE(contains(load_error(base, {"data.datasets.0.image_pattern='{case}/{case}_flair.nii.gz'"}),
                       "data.datasets.0: give both image_pattern and label_pattern, or neither"));
  EXPECT_TRUE(contains(load_error(base, {"data.datasets.0.image_pattern=flair.nii.gz",
                                         "data.datasets.0.label_pattern='{case}/seg.nii.gz'"}),
                       "data.datasets.0.image_pattern: must hold {case}"));
  EXPECT_TRUE(contains(load_error(base, {"data.datasets.0.image_pattern={case}/{case}_flair.nii.gz"}),
                       "data.datasets.0.image_pattern: expected a string, got a map: YAML reads a value "
                       "that starts with '{' as one; put it in quotes"));
  EXPECT_TRUE(contains(load_error("data:\n  datasets:\n    - pairs: [{image: a.nii, label: b.nii}]\n"
                                  "      image_pattern: '{case}.nii'\n      label_pattern: '{case}_seg.nii'\n"),
                       "data.datasets.0: image_pattern and label_pattern are read under a root folder"));
  EXPECT_EQ(load_error(base + "precision: bf16\ndevice: cuda\n"), "");
}

TEST(TrainConfig, OverridesApplyBeforeValidation) {
  const std::string path = write_file("run.yaml", kMinimal);
  const Config c = load_config(path, {"optim.lr=1e-4", "model.encoder.global_attn_indexes=[1, 3]",
                                      "model.encoder.depth=4", "loop.protocol=center",
                                      "data.datasets.0.modality=mr", "data.spacing=[1.5, 1.5, 2]",
                                      "schedule.warmup_epochs=5", "model.checkpoint=m.safetensors"});
  EXPECT_EQ(c.optim.lr, 1e-4);
  EXPECT_EQ(c.model.architecture.encoder.global_attn_indexes, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(c.model.architecture.encoder.depth, 4);
  EXPECT_EQ(c.loop.protocol, interaction::ClickProtocol::kCenter);
  EXPECT_EQ(c.data.datasets[0].modality, Modality::kMR);
  ASSERT_TRUE(c.data.spacing.has_value());
  EXPECT_EQ(*c.data.spacing, (std::array<double, 3>{1.5, 1.5, 2.0}));
  EXPECT_EQ(c.schedule.warmup_epochs, 5);
  EXPECT_EQ(c.model.checkpoint, "m.safetensors");
  // An empty value is null: an optional goes back to unset.
  EXPECT_FALSE(load_config(path, {"data.spacing=[1, 1, 1]", "data.spacing="}).data.spacing);

  EXPECT_TRUE(contains(load_error(kMinimal, {"optim.lr"}), "expected key=value"));
  EXPECT_TRUE(contains(load_error(kMinimal, {"optim.lrate=1"}), "did you mean 'optim.lr'?"));
  EXPECT_TRUE(contains(load_error(kMinimal, {"data.datasets.3.root=/x"}), "not an index"));
  EXPECT_TRUE(contains(load_error(kMinimal, {"data.datasets.0.root.x=1"}), "inside a value"));
  YAML::Node empty;
  apply_override(empty, "loop.iterations=3");
  EXPECT_EQ(empty["loop"]["iterations"].as<int>(), 3);
}

TEST(TrainConfig, YamlRoundTripGivesTheSameConfig) {
  const std::string path = write_file("run.yaml", kMinimal);
  const Config c = load_config(
      path, {"optim.lr=3.3e-4", "optim.clip_grad_norm=1.5", "data.spacing=[1.5, 1.5, 1.5]", "loss.kind=dice_bce",
             "data.datasets=[{pairs: [{image: a.nii.gz, label: b.nii.gz}], modality: mr}, "
             "{dataset_json: /msd/dataset.json, target_labels: [1, 2], channel: FLAIR}, "
             "{root: /brats, image_pattern: '{case}/{case}_flair.nii.gz', "
             "label_pattern: '{case}/{case}_seg.nii.gz', channel: 0}]",
             "precision=fp16", "device=cuda", "model.checkpoint=/ckpt/sam med3d.pth",
             "output='/tmp/out: run'"});
  const std::string text = to_yaml(c);
  const Config back = parse_config(YAML::Load(text), "resolved.yaml");
  EXPECT_EQ(to_yaml(back), text);
  EXPECT_EQ(back.optim.lr, 3.3e-4);
  EXPECT_EQ(back.optim.clip_grad_norm, 1.5);
  EXPECT_EQ(back.loss.kind, LossKind::kDiceBce);
  ASSERT_EQ(back.data.datasets.size(), 3u);
  ASSERT_EQ(back.data.datasets[0].pairs.size(), 1u);
  EXPECT_EQ(back.data.datasets[0].pairs[0].second, "b.nii.gz");
  EXPECT_EQ(back.data.datasets[1].target_labels, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(back.data.datasets[1].channel, "FLAIR");
  EXPECT_EQ(back.data.datasets[2].image_pattern, "{case}/{case}_flair.nii.gz");
  EXPECT_EQ(back.data.datasets[2].label_pattern, "{case}/{case}_seg.nii.gz");
  EXPECT_EQ(back.data.datasets[2].channel, "0");
  EXPECT_EQ(back.model.checkpoint, "/ckpt/sam med3d.pth");
  EXPECT_EQ(back.output, "/tmp/out: run");
  EXPECT_EQ(back.precision, Precision::kFp16);
  // Unset optionals and empty strings survive too.
  const Config plain = parse_config(YAML::Load(kMinimal), "min.yaml");
  const Config plain_back = parse_config(YAML::Load(to_yaml(plain)), "resolved.yaml");
  EXPECT_FALSE(plain_back.data.spacing.has_value());
  EXPECT_EQ(plain_back.model.checkpoint, "");
  EXPECT_EQ(to_yaml(plain_back), to_yaml(plain));
}

TEST(TrainConfig, EveryShippedConfigValidates) {
  const std::filesystem::path dir = std::filesystem::path(MSAM_SOURCE_DIR) / "configs";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(load_config(entry.path().string()));
    ++count;
  }
  EXPECT_GE(count, 9);
}

#endif  // MSAM_HAVE_YAML
