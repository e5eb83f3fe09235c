// Data pipeline on real files: synthetic dataset written with ITK, `prepare` on the shared
// real scans, paste-back onto the file's grid, and the pipeline benchmark.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "dicom_series.h"
#include "fixtures.h"
#include "multi_channel.h"
#include "msam/data/cache.h"
#include "msam/data/dataset.h"
#include "msam/data/synth.h"
#include "msam/imageio/image_io.h"
#include "msam/train/run_data.h"

namespace fs = std::filesystem;
using namespace msam::data;

namespace {

CaseReader itk_reader() {
  return [](const CaseSource& c) {
    return std::make_pair(msam::imageio::read_image(c.image, c.channel), msam::imageio::read_label(c.label));
  };
}

const CaseOutcome& outcome(const PrepareReport& r, const std::string& id) {
  for (const auto& c : r.cases)
    if (c.case_id == id) return c;
  throw std::runtime_error("no outcome for " + id);
}

}  // namespace

TEST(SynthDataset, WritesNnunetLayoutThatPreparesAndPastesBack) {
  const auto out = msam::test::temp_dir("synth");
  const auto names = write_synthetic_dataset(out, 3, 11, msam::imageio::write_volume);
  ASSERT_EQ(names, (std::vector<std::string>{"case_000", "case_001", "case_002"}));
  for (const auto& n : names) {
    EXPECT_TRUE(fs::is_regular_file(out + "/imagesTr/" + n + "_0000.nii.gz"));
    EXPECT_TRUE(fs::is_regular_file(out + "/labelsTr/" + n + ".nii.gz"));
  }
  // Found through dataset.json and through the folders alike.
  auto cases = discover_cases(DatasetSpec{"synth", out, {}, {}, Modality::CT});
  fs::rename(out + "/dataset.json", out + "/dataset.json.bak");
  EXPECT_EQ(discover_cases(DatasetSpec{"synth", out, {}, {}, Modality::CT}).size(), 3u);
  ASSERT_EQ(cases.size(), 3u);

  const auto written = msam::imageio::read_image(cases[2].image);
  const auto expected = make_synthetic_case(11, 2);
  EXPECT_TRUE(at::equal(written.data, expected.image.data.to(at::kFloat)));
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(written.geometry.spacing[d], expected.image.geometry.spacing[d], 1e-5);

  PreprocessSettings settings;  // 128³, min 1000 voxels
  const auto report = prepare_cache(cases, settings, out + "/cache", itk_reader());
  for (const auto& c : cases) {
    const auto& o = outcome(report, c.id);
    ASSERT_NE(o.status, CaseOutcome::Status::Failed) << o.message;
    if (o.status == CaseOutcome::Status::Skipped) continue;
    const auto entry = read_cache_entry(o.entry);
    EXPECT_EQ(entry.image.sizes().vec(), (std::vector<int64_t>{128, 128, 128}));
    // Back on the file's grid (LPS or RAS stored, isotropic or not), the patch's lesion is
    // the file's lesion wherever the patch covers it: all of it when nothing was cut off.
    const auto original = msam::imageio::read_label(c.label);
    const auto back = restore_to_original(entry.label, entry.info.record);
    ASSERT_TRUE(back.data.sizes().equals(original.data.sizes()));
    const auto orig_mask = original.data.to(at::kBool), back_mask = back.data.to(at::kBool);
    EXPECT_EQ((back_mask & ~orig_mask).sum().item<int64_t>(), 0) << c.id;
    EXPECT_EQ(back_mask.sum().item<int64_t>(), entry.info.label_voxels) << c.id;
    for (int d = 0; d < 3; ++d) EXPECT_NEAR(back.geometry.origin[d], original.geometry.origin[d], 1e-4);
  }
  EXPECT_GE(report.count(CaseOutcome::Status::Prepared), 2u);

  // Resampled to 1.5 mm: the patch is on the target spacing, and paste-back still lands on
  // the original grid, inside a slightly dilated original lesion (nearest-neighbour both ways).
  settings.target_spacing = Point3{1.5, 1.5, 1.5};
  const auto resampled = prepare_cache(cases, settings, out + "/cache15", itk_reader());
  const auto& o = outcome(resampled, cases[2].id);
  ASSERT_EQ(o.status, CaseOutcome::Status::Prepared) << o.message;
  const auto entry = read_cache_entry(o.entry);
  EXPECT_TRUE(entry.info.record.resampled);
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(entry.info.record.patch_geometry.spacing[d], 1.5, 1e-9);
  const auto original = msam::imageio::read_label(cases[2].label).data.to(at::kFloat);
  const auto back = restore_to_original(entry.label, entry.info.record).data.to(at::kFloat);
  const auto dilated = at::max_pool3d(original.unsqueeze(0), 3, 1, 1).squeeze(0);
  EXPECT_EQ((back.gt(0) & dilated.eq(0)).sum().item<int64_t>(), 0);
  EXPECT_GT((back.gt(0) & original.gt(0)).sum().item<float>(), 0.8 * original.sum().item<float>());
}

TEST(PrepareConfig, GeometryMismatchFailsUnlessTheRunCopiesTheImageGeometry) {
  // Image and label on the same voxel grid, but the label's origin is 2 mm off.
  const auto dir = msam::test::temp_dir("mismatch");
  Geometry g;
  g.spacing = {1.0, 1.0, 2.0};
  g.origin = {5, -7, 40};
  auto image = at::rand({40, 36, 20}) * 100 + 1;
  auto label = at::zeros({40, 36, 20}, at::kByte);
  label.slice(0, 10, 24).slice(1, 8, 22).slice(2, 4, 12).fill_(1);
  Geometry moved = g;
  moved.origin[0] += 2.0;
  msam::imageio::write_volume(dir + "/scan.nii.gz", Volume{image, g, ""});
  msam::imageio::write_volume(dir + "/scan_label.nii.gz", Volume{label, moved, ""});
  const auto cases = discover_cases(
      DatasetSpec{"pair", "", {{dir + "/scan.nii.gz", dir + "/scan_label.nii.gz"}}, {}, Modality::MR});

  msam::train::Config config;  // data.copy_image_geometry: false
  const auto refused =
      prepare_cache(cases, msam::train::preprocess_settings(config), dir + "/cache", itk_reader());
  ASSERT_EQ(refused.cases[0].status, CaseOutcome::Status::Failed);
  const auto& message = refused.cases[0].message;
  EXPECT_NE(message.find("scan_label.nii.gz"), std::string::npos) << message;
  EXPECT_NE(message.find("origin"), std::string::npos) << message;
  EXPECT_NE(message.find("data.copy_image_geometry"), std::string::npos) << message;

  config.data.copy_image_geometry = true;
  const auto copied =
      prepare_cache(cases, msam::train::preprocess_settings(config), dir + "/cache", itk_reader());
  ASSERT_EQ(copied.cases[0].status, CaseOutcome::Status::Prepared) << copied.cases[0].message;
  const auto entry = read_cache_entry(copied.cases[0].entry);
  EXPECT_EQ(entry.info.label_voxels, 14 * 14 * 8);
  // The case lies where the image says.
  const auto back = restore_to_original(entry.label, entry.info.record);
  EXPECT_TRUE(at::equal(back.data, label));
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(back.geometry.origin[d], g.origin[d], 1e-6);
}

TEST(PrepareConfig, PairsTakeDicomSeriesFoldersForImagesAndLabels) {
  const auto dir = msam::test::temp_dir("dicom_pairs");
  const std::array<double, 3> spacing{0.8, 0.9, 2.0}, origin{-10.0, 20.0, -30.0};
  const auto image = torch::randint(1, 500, {20, 36, 40}, torch::kShort);  // (Z, Y, X)
  auto label = torch::zeros({20, 36, 40}, torch::kShort);
  label.slice(0, 4, 12).slice(1, 8, 22).slice(2, 10, 24).fill_(1);
  msam::test::write_dicom_series(dir + "/scan_a", image, spacing, origin, 1);
  msam::test::write_dicom_series(dir + "/scan_b", image, spacing, origin, 2);
  msam::test::write_dicom_series(dir + "/seg_b", label, spacing, origin, 3);
  Geometry g;
  g.spacing = spacing;
  g.origin = origin;
  msam::imageio::write_volume(dir + "/seg_a.nii.gz", Volume{label.permute({2, 1, 0}), g, ""});

  // A DICOM folder image with a NIfTI label, and a DICOM folder for both.
  const auto cases = discover_cases(DatasetSpec{
      "dcm", "", {{dir + "/scan_a", dir + "/seg_a.nii.gz"}, {dir + "/scan_b/", dir + "/seg_b"}}, {}, Modality::CT});
  ASSERT_EQ(cases.size(), 2u);
  PreprocessSettings settings;
  settings.patch_size = {32, 32, 16};
  const auto report = prepare_cache(cases, settings, dir + "/cache", itk_reader());
  for (const char* id : {"dcm/scan_a", "dcm/scan_b"}) {
    const auto& o = outcome(report, id);
    ASSERT_EQ(o.status, CaseOutcome::Status::Prepared) << id << ": " << o.message;
    EXPECT_EQ(read_cache_info(o.entry).label_voxels, 8 * 14 * 14) << id;
  }
  EXPECT_EQ(prepare_cache(cases, settings, dir + "/cache", itk_reader()).summary(),
            "0 prepared, 2 reused, 0 skipped, 0 failed");
  // A rewritten slice makes the folder's entry stale.
  const auto slice = fs::path(dir) / "scan_a" / "slice3.dcm";
  fs::last_write_time(slice, fs::last_write_time(slice) + std::chrono::seconds(5));
  const auto again = prepare_cache(cases, settings, dir + "/cache", itk_reader());
  EXPECT_EQ(outcome(again, "dcm/scan_a").status, CaseOutcome::Status::Prepared);
  EXPECT_EQ(outcome(again, "dcm/scan_b").status, CaseOutcome::Status::Reused);
}

TEST(PrepareRealData, SmallLesionSkippedTargetSelectedAndFiveDimensionalRead) {
  const auto dir = msam::test::temp_dir("prepare_real");
  const auto data = msam::test::data_path("");
  DatasetSpec breast_set, abdomen_set, lung_set;
  breast_set.name = "breast";
  breast_set.modality = Modality::MR;
  breast_set.pairs = {{data + "breast_mr/image.nrrd", data + "breast_mr/label.nrrd"}};
  abdomen_set.name = "abdomen";
  abdomen_set.modality = Modality::CT;
  abdomen_set.targets = {5};
  abdomen_set.pairs = {{data + "abdomen_ct_organs/image.nii.gz", data + "abdomen_ct_organs/label.nii.gz"}};
  lung_set.name = "lung";
  lung_set.pairs = {{data + "msam_lung_ct/image.nii.gz", data + "msam_lung_ct/label.nii.gz"}};
  struct {
    std::vector<DatasetSpec> datasets;
    PreprocessSettings preprocess;
    std::string cache_dir;
  } config{{breast_set, abdomen_set, lung_set}, {}, dir + "/cache"};
  const auto cases = discover_cases(config.datasets);
  ASSERT_EQ(cases.size(), 3u);
  std::vector<std::string> logged;
  const auto report = prepare_cache(cases, config.preprocess, config.cache_dir, itk_reader(),
                                    [&](const CaseOutcome& o) { logged.push_back(status_name(o.status)); });
  EXPECT_EQ(logged.size(), 3u);

  const auto& breast = outcome(report, "breast/image");
  EXPECT_EQ(breast.status, CaseOutcome::Status::Skipped);
  EXPECT_NE(breast.message.find("143 voxels"), std::string::npos) << breast.message;
  EXPECT_NE(breast.message.find("breast_mr/label.nrrd"), std::string::npos) << breast.message;

  const auto& abdomen = outcome(report, "abdomen/image");
  ASSERT_EQ(abdomen.status, CaseOutcome::Status::Prepared) << abdomen.message;
  const auto liver = read_cache_entry(abdomen.entry);
  EXPECT_EQ(liver.info.label_voxels, 38634);  // every voxel of value 5 (the grid fits the patch)
  EXPECT_EQ(liver.info.targets, std::vector<int>{5});
  EXPECT_EQ(liver.info.modality, Modality::CT);
  // 122×101×30 is padded to 128³ around the liver.
  EXPECT_LT(liver.info.record.crop.start[2], 0);

  const auto& lung = outcome(report, "lung/image");
  ASSERT_EQ(lung.status, CaseOutcome::Status::Prepared) << lung.message;
  EXPECT_EQ(read_cache_info(lung.entry).label_voxels, 2719);

  // Unchanged sources and settings: everything reused; the skip is reported again.
  const auto again = prepare_cache(cases, config.preprocess, config.cache_dir, itk_reader());
  EXPECT_EQ(again.summary(), "0 prepared, 2 reused, 1 skipped, 0 failed");

  // Without a target the multi-label map is an error naming the file, not a silent mask.
  auto no_target = cases[1];
  no_target.targets.clear();
  const auto bad = prepare_cache({no_target}, config.preprocess, dir + "/cache2", itk_reader());
  EXPECT_EQ(bad.cases[0].status, CaseOutcome::Status::Failed);
  EXPECT_NE(bad.cases[0].message.find("abdomen_ct_organs/label.nii.gz"), std::string::npos) << bad.cases[0].message;
}

// The real-lesion demo's preprocessing (configs/brats_flair_cpu.yaml) on the ten BraTS 2018
// FLAIR cases: every whole-tumour mask survives resampling and cropping with its volume (the
// crop holds the whole tumour), and the saved split names exactly these cases.
TEST(PrepareRealData, BratsFlairLesionsKeepTheirVolumeInTheDemoGrid) {
  const auto dir = msam::test::temp_dir("prepare_brats");
  const std::string source = MSAM_SOURCE_DIR;
  auto config = msam::train::load_config(
      source + "/configs/brats_flair_cpu.yaml",
      {"data.datasets.0.root=" + msam::test::data_path("brats2018_flair"), "output=" + dir,
       "data.split.file=" + source + "/configs/brats_flair_split.json"});
  const auto data = msam::train::prepare_run_data(config, itk_reader());
  ASSERT_EQ(data.train.size() + data.val.size() + data.test.size(), 10u);
  ASSERT_TRUE(config.data.spacing.has_value());
  const auto& s = *config.data.spacing;
  const double voxel_ml = s[0] * s[1] * s[2] / 1000.0;
  // Tumour voxels of each mask at 1 mm (the data folder's README).
  const std::map<std::string, int64_t> tumour_voxels = {
      {"brats18_00", 68118},  {"brats18_01", 168187}, {"brats18_02", 37429},
      {"brats18_03", 83418},  {"brats18_04", 138051}, {"brats18_05", 211979},
      {"brats18_06", 87324},  {"brats18_07", 97205},  {"brats18_08", 26500},
      {"brats18_09", 90740}};
  std::vector<std::string> entries = data.train;
  entries.insert(entries.end(), data.val.begin(), data.val.end());
  entries.insert(entries.end(), data.test.begin(), data.test.end());
  for (const auto& entry : entries) {
    const auto info = read_cache_info(entry);
    const auto name = info.case_id.substr(info.case_id.find('/') + 1);
    SCOPED_TRACE(info.case_id);
    const auto label = msam::imageio::read_label(info.label.path);
    const int64_t voxels = label.data.gt(0).sum().item<int64_t>();
    EXPECT_EQ(voxels, tumour_voxels.at(name));
    const auto& sp = label.geometry.spacing;
    const double ml = voxels * sp[0] * sp[1] * sp[2] / 1000.0;
    // Resampled to the demo's grid and cropped around the lesion, the tumour keeps its volume
    // to within 2 % (measured on the 1.5 mm grid: 1.4 % at most, brats18_01, 168 ml): the crop
    // holds the tumour.
    EXPECT_NEAR(info.label_voxels * voxel_ml, ml, 0.02 * ml);
    // The count recorded in the entry is the mask stored in it.
    const auto cached = read_cache_entry(entry);
    EXPECT_EQ(cached.label.sum().item<int64_t>(), info.label_voxels);
  }
}

// The same BraTS scan as other releases distribute it prepares to the same patch: in the
// Decathlon's layout (FLAIR as channel 0 of a 4-D file, whole tumour = labels 1–3, chosen by
// the channel's name in dataset.json) and in per-case folders named by file patterns.
TEST(PrepareRealData, OtherBratsReleasesPrepareToTheSamePatch) {
  const auto dir = msam::test::temp_dir("prepare_brats_layouts");
  const std::string source = MSAM_SOURCE_DIR;
  const auto config = msam::train::load_config(source + "/configs/brats_flair_cpu.yaml",
                                               {"data.datasets.0.root=" + msam::test::data_path("brats2018_flair")});
  const auto settings = msam::train::preprocess_settings(config);
  const auto flair = msam::test::data_path("brats2018_flair/imagesTr/brats18_08_0000.nii.gz");
  const auto mask = msam::test::data_path("brats2018_flair/labelsTr/brats18_08.nii.gz");

  // The Decathlon: channels FLAIR, T1w, T1gd, T2w; the others stand in as transforms of it.
  const fs::path msd = fs::path(dir) / "Task01_BrainTumour";
  fs::create_directories(msd / "imagesTr");
  fs::create_directories(msd / "labelsTr");
  {
    const auto scan = msam::imageio::read_image(flair);
    msam::test::write_channels((msd / "imagesTr/BRATS_008.nii").string(),
                               {scan.data, scan.data * 0.5, scan.data.neg(), scan.data + 100}, scan.geometry);
    auto label = msam::imageio::read_label(mask);
    label.data = label.data * 2;  // the Decathlon's "non-enhancing tumour" stands for the whole
    msam::imageio::write_volume((msd / "labelsTr/BRATS_008.nii.gz").string(), label);
  }
  std::ofstream(msd / "dataset.json")
      << R"({"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},)"
      << R"( "training": [{"image": "./imagesTr/BRATS_008.nii", "label": "./labelsTr/BRATS_008.nii.gz"}]})";

  // BraTS 2021's folders, the files linked.
  const fs::path native = fs::path(dir) / "BraTS2021";
  fs::create_directories(native / "BraTS2021_00008");
  fs::create_symlink(flair, native / "BraTS2021_00008/BraTS2021_00008_flair.nii.gz");
  fs::create_symlink(mask, native / "BraTS2021_00008/BraTS2021_00008_seg.nii.gz");

  DatasetSpec original{"original", "", {{flair, mask}}, {1}, Modality::MR};
  DatasetSpec decathlon{"", msd.string(), {}, {1, 2, 3}, Modality::MR};
  decathlon.channel = "flair";
  DatasetSpec brats2021{"", native.string(), {}, {1, 2, 4}, Modality::MR};
  brats2021.image_pattern = "{case}/{case}_flair.nii.gz";
  brats2021.label_pattern = "{case}/{case}_seg.nii.gz";
  const auto cases = discover_cases({original, decathlon, brats2021});
  ASSERT_EQ(cases.size(), 3u);
  const auto report = prepare_cache(cases, settings, dir + "/cache", itk_reader());
  std::vector<CachedCase> prepared;
  for (const auto& c : report.cases) {
    ASSERT_EQ(c.status, CaseOutcome::Status::Prepared) << c.case_id << ": " << c.message;
    prepared.push_back(read_cache_entry(c.entry));
  }
  for (size_t i = 1; i < prepared.size(); ++i) {
    SCOPED_TRACE(prepared[i].info.case_id);
    EXPECT_TRUE(torch::equal(prepared[i].image, prepared[0].image));
    EXPECT_TRUE(torch::equal(prepared[i].label, prepared[0].label));
    EXPECT_EQ(prepared[i].info.label_voxels, prepared[0].info.label_voxels);
  }
  // Another channel is another scan: the channel is in the cache key, so the entry is
  // prepared again, from that channel.
  auto t1gd = cases[1];
  t1gd.channel = 2;
  const auto other = prepare_cache({t1gd}, settings, dir + "/cache", itk_reader());
  ASSERT_EQ(other.cases[0].status, CaseOutcome::Status::Prepared) << other.cases[0].message;
  EXPECT_FALSE(torch::equal(read_cache_entry(other.cases[0].entry).image, prepared[1].image));
}
