// Other tools' masks read through ITK: a case's own label, saved in each format msam reads
// (NIfTI, NRRD, MetaImage, a DICOM series), is found by its case name, passes the geometry
// check after the file's rounding, and scores Dice 1 on the original grid and in the crop.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "dicom_series.h"
#include "fixtures.h"
#include "msam/data/cache.h"
#include "msam/eval/prediction_scoring.h"
#include "msam/imageio/image_io.h"

namespace fs = std::filesystem;
using namespace msam;

TEST(PredictionFiles, EveryFormatScoresTheLabelAsPerfect) {
  const fs::path dir = test::temp_dir("prediction_files_itk");
  // Axis-aligned (DICOM as written here has no other direction), off-integer spacing and origin.
  data::Geometry g;
  g.spacing = {0.8, 0.9, 1.5};
  g.origin = {-20.5, 15.25, 40.125};
  torch::manual_seed(3);
  const auto image = torch::rand({40, 36, 30}) * 100 + 1;
  auto label = torch::zeros({40, 36, 30}, torch::kUInt8);
  label.slice(0, 12, 22).slice(1, 10, 20).slice(2, 8, 16).fill_(1);
  const data::Volume scan{image, g, "scan"}, truth{label, g, "label"};

  for (const char* f : {"img", "lbl"}) std::ofstream(dir / f) << "x";
  data::PreprocessSettings settings;
  settings.patch_size = {32, 32, 32};
  settings.min_label_voxels = 10;
  const auto report = data::prepare_cache(
      {{"set/c", (dir / "img").string(), (dir / "lbl").string(), {}, data::Modality::MR}},
      settings, (dir / "cache").string(),
      [&](const data::CaseSource&) { return std::make_pair(scan, truth); });
  ASSERT_EQ(report.cases.at(0).status, data::CaseOutcome::Status::Prepared) << report.cases[0].message;
  const auto c = data::read_cache_entry(report.cases[0].entry);

  for (const char* format : {"nifti", "nrrd", "meta"}) fs::create_directories(dir / format);
  imageio::write_volume((dir / "nifti" / "c.nii.gz").string(), truth);
  imageio::write_volume((dir / "nrrd" / "c.nrrd").string(), truth);
  imageio::write_volume((dir / "meta" / "c.mha").string(), truth);
  test::write_dicom_series((dir / "dicom" / "c").string(), label.permute({2, 1, 0}), g.spacing,
                           g.origin);
  const eval::PredictionHooks hooks{imageio::read_label,
                                    [&](const data::CacheEntryInfo&) { return truth; }};
  for (const char* format : {"nifti", "nrrd", "meta", "dicom"}) {
    const auto s = eval::score_prediction(c, {(dir / format).string(), "", 1.0, 0}, hooks);
    ASSERT_EQ(s.status, eval::CaseStatus::kScored) << format << ": " << s.message;
    ASSERT_TRUE(s.original);
    EXPECT_EQ(s.original->dice, 1.0) << format;
    EXPECT_EQ(s.crop.dice, 1.0) << format;
  }
  // Two files for one case: neither is guessed at.
  imageio::write_volume((dir / "nrrd" / "c.mha").string(), truth);
  const auto twice = eval::score_prediction(c, {(dir / "nrrd").string(), "", 1.0, 0}, hooks);
  EXPECT_EQ(twice.status, eval::CaseStatus::kInvalid);
  EXPECT_NE(twice.message.find("more than one prediction"), std::string::npos) << twice.message;
}
