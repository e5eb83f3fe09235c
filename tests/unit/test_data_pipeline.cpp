// Data pipeline without ITK: discovery, splits, preprocessing, cache, loader, synthesis.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/data/cache.h"
#include "msam/data/dataset.h"
#include "msam/data/loader.h"
#include "msam/data/preprocess.h"
#include "msam/data/split.h"
#include "msam/data/synth.h"
#include "msam/io/safetensors.h"
#ifdef MSAM_HAVE_YAML
#endif

namespace fs = std::filesystem;
using namespace msam::data;

namespace {

void touch(const fs::path& p, const std::string& content = "x") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const msam::Error& e) {
    return e.what();
  }
  return "";
}

// A RAS+ scan (direction diag(-1,-1,1) in LPS) with a box lesion of the given extent.
std::pair<Volume, Volume> box_case(at::IntArrayRef shape, Index3 lo, Index3 hi, uint8_t value = 1) {
  Geometry g;
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  g.spacing = {1.0, 1.0, 2.0};
  g.origin = {10, 20, 30};
  auto image = at::rand(shape, at::kFloat) * 100 + 1;  // every voxel > 0
  auto label = at::zeros(shape, at::kByte);
  label.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2]).fill_(value);
  return {Volume{image, g, "img.nii.gz"}, Volume{label, g, "lbl.nii.gz"}};
}

// A skull-stripped MR scan: box_case's image a block of positive values (the brain), 0 around it.
struct SkullStripped {
  Volume image, label;
  at::Tensor brain;
};
SkullStripped skull_stripped_case() {
  auto vols = box_case({20, 20, 20}, {7, 7, 7}, {13, 13, 13});
  auto brain = at::zeros(vols.first.data.sizes(), at::kBool);
  brain.slice(0, 3, 17).slice(1, 2, 18).slice(2, 4, 16).fill_(true);
  vols.first.data.masked_fill_(brain.logical_not(), 0.0f);
  return {vols.first, vols.second, brain};
}

PreprocessSettings small_settings() {
  PreprocessSettings s;
  s.patch_size = {16, 16, 16};
  s.min_label_voxels = 10;
  return s;
}

// torchio CropOrPad's placement as the pipeline first wrote it, with whole-volume reductions.
RoiRecord reduction_placement(const at::Tensor& mask, const Index3& patch_size) {
  RoiRecord r;
  r.size = patch_size;
  for (int d = 0; d < 3; ++d) r.full_shape[d] = mask.size(d);
  for (int d = 0; d < 3; ++d) {
    std::vector<int64_t> others;
    for (int o = 0; o < 3; ++o)
      if (o != d) others.push_back(o);
    const auto any = mask.ne(0).sum(others).gt(0).nonzero().flatten();
    const double bb_min = static_cast<double>(any[0].item<int64_t>());
    const double bb_max = static_cast<double>(any[-1].item<int64_t>()) + 1;
    double center = (bb_min + bb_max) / 2;
    if ((patch_size[d] % 2 == 0) != (std::fmod(center, 1.0) == 0.0)) center -= 0.5;
    r.start[d] = static_cast<int64_t>(std::llround(center - patch_size[d] / 2.0));
  }
  return r;
}

// The preprocessing done the straightforward way, every step on the whole volume: reorient,
// resample, clamp, crop-or-pad, z-score (no checks: the inputs are valid).
PreparedCase whole_volume_preprocess(const Volume& image, const Volume& label, const CaseSource& source,
                                     const PreprocessSettings& settings) {
  const auto mask = binarise_label(label, source.targets);
  const double background = background_value(image.data, source.modality);
  const auto ras_image = reorient_to_ras(
      Volume{background == 0.0 ? image.data.to(at::kFloat) : image.data.to(at::kFloat) - background,
             image.geometry, image.source});
  const auto ras_label = reorient_to_ras(Volume{mask, label.geometry, label.source});
  PreparedCase out;
  auto& rec = out.record;
  rec.orientation = ras_image.record;
  rec.ras_geometry = ras_image.volume.geometry;
  for (int d = 0; d < 3; ++d) rec.ras_shape[d] = ras_image.volume.data.size(d);
  Volume grid_image = ras_image.volume, grid_label = ras_label.volume;
  if (settings.target_spacing) {
    grid_image = resample(grid_image, *settings.target_spacing, Interp::Linear);
    grid_label = resample(grid_label, *settings.target_spacing, Interp::Nearest);
    rec.resampled = true;
  }
  rec.grid_geometry = grid_image.geometry;
  at::Tensor grid = grid_image.data;
  if (source.modality == Modality::CT) grid = grid.clamp(-1000, 1000);
  rec.crop = reduction_placement(grid_label.data, settings.patch_size);
  Index3 center;
  for (int d = 0; d < 3; ++d) center[d] = rec.crop.start[d] + settings.patch_size[d] / 2;
  out.label = extract_roi(grid_label.data, center, settings.patch_size, 0.0).crop;
  out.image = zscore(extract_roi(grid, center, settings.patch_size, 0.0).crop,
                     zscore_voxels(source.modality), image.source);
  rec.patch_geometry = roi_geometry(rec.grid_geometry, rec.crop);
  out.label_voxels = out.label.sum().item<int64_t>();
  return out;
}

void expect_same_geometry(const Geometry& a, const Geometry& b) {
  EXPECT_EQ(a.spacing, b.spacing);
  EXPECT_EQ(a.origin, b.origin);
  EXPECT_EQ(a.direction, b.direction);
}

}  // namespace

// ---- discovery ---------------------------------------------------------------------------

TEST(DatasetDiscovery, NnunetAndSameNamePairs) {
  const fs::path root = msam::test::temp_dir("nnunet");
  touch(root / "imagesTr/a_0000.nii.gz");
  touch(root / "labelsTr/a.nii.gz");
  touch(root / "imagesTr/b.nii.gz");  // same-name pair
  touch(root / "labelsTr/b.nii.gz");
  touch(root / "imagesTr/._a_0000.nii.gz");  // hidden file, ignored
  const auto cases = discover_cases(DatasetSpec{"set", root.string(), {}, {3}, Modality::CT});
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].id, "set/a");
  EXPECT_EQ(cases[0].image, (root / "imagesTr/a_0000.nii.gz").string());
  EXPECT_EQ(cases[0].label, (root / "labelsTr/a.nii.gz").string());
  EXPECT_EQ(cases[1].id, "set/b");
  EXPECT_EQ(cases[1].image, (root / "imagesTr/b.nii.gz").string());
  EXPECT_EQ(cases[1].targets, std::vector<int>{3});
  EXPECT_EQ(cases[1].modality, Modality::CT);
}

TEST(DatasetDiscovery, MissingPartnerNamesTheFile) {
  const fs::path root = msam::test::temp_dir("partner");
  touch(root / "imagesTr/a_0000.nii.gz");
  touch(root / "labelsTr/a.nii.gz");
  touch(root / "labelsTr/lonely.nii.gz");
  auto msg = error_of([&] { discover_cases(DatasetSpec{"", root.string(), {}, {}, {}}); });
  EXPECT_NE(msg.find("labelsTr/lonely.nii.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lonely_0000.nii.gz"), std::string::npos) << msg;

  fs::remove(root / "labelsTr/lonely.nii.gz");
  touch(root / "imagesTr/orphan_0000.nii.gz");
  msg = error_of([&] { discover_cases(DatasetSpec{"", root.string(), {}, {}, {}}); });
  EXPECT_NE(msg.find("orphan_0000.nii.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("labelsTr/orphan.nii.gz"), std::string::npos) << msg;
}

TEST(DatasetDiscovery, MsdJsonAndCombinedDatasets) {
  const fs::path msd = msam::test::temp_dir("msd") + "/Task01";
  touch(msd / "imagesTr/lung_1.nii.gz");
  touch(msd / "labelsTr/lung_1.nii.gz");
  touch(msd / "dataset.json",
        R"({"training": [{"image": "./imagesTr/lung_1.nii.gz", "label": "./labelsTr/lung_1.nii.gz"}]})");
  const fs::path other = msam::test::temp_dir("pairs");
  touch(other / "scan.nrrd");
  touch(other / "mask.nrrd");
  const auto cases = discover_cases(std::vector<DatasetSpec>{
      {"", msd.string(), {}, {}, {}},
      {"extra", "", {{(other / "scan.nrrd").string(), (other / "mask.nrrd").string()}}, {2}, Modality::MR}});
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].id, "Task01/lung_1");
  EXPECT_EQ(cases[0].image, (msd / "imagesTr/lung_1.nii.gz").string());
  EXPECT_EQ(cases[1].id, "extra/scan");
  EXPECT_EQ(cases[1].targets, std::vector<int>{2});

  touch(msd / "dataset.json", R"({"training": [{"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/lung_1.nii.gz"}]})");
  const auto msg = error_of([&] { discover_cases(DatasetSpec{"", msd.string(), {}, {}, {}}); });
  EXPECT_NE(msg.find("imagesTr/gone.nii.gz"), std::string::npos) << msg;

  const auto dup = error_of([&] {
    const std::pair<std::string, std::string> pair{(other / "scan.nrrd").string(), (other / "mask.nrrd").string()};
    discover_cases(std::vector<DatasetSpec>{{"same", "", {pair}, {}, {}}, {"same", "", {pair}, {}, {}}});
  });
  EXPECT_NE(dup.find("'same'"), std::string::npos) << dup;
}

TEST(DatasetDiscovery, PairsAreNamedAfterTheirImagesWhichMayBeDicomFolders) {
  // BraTS: one segmentation for four MR sequences; a DICOM series is a folder of slices.
  const fs::path dir = msam::test::temp_dir("shared_label");
  for (const char* f : {"p1_flair.nii.gz", "p1_t1.nii.gz", "p1_0000.nii.gz", "p1_seg.nii.gz", "ct/1.dcm"})
    touch(dir / f);
  const auto seg = (dir / "p1_seg.nii.gz").string();
  const auto cases = discover_cases(DatasetSpec{"brats", "",
                                                {{(dir / "p1_flair.nii.gz").string(), seg},
                                                 {(dir / "p1_t1.nii.gz").string(), seg},
                                                 {(dir / "p1_0000.nii.gz").string(), seg},
                                                 {(dir / "ct/").string(), seg}},
                                                {},
                                                Modality::MR});
  std::vector<std::string> ids;
  for (const auto& c : cases) ids.push_back(c.id);
  // Only nnU-Net folders drop a _0000 channel suffix; a folder is named after itself.
  EXPECT_EQ(ids, (std::vector<std::string>{"brats/ct", "brats/p1_0000", "brats/p1_flair", "brats/p1_t1"}));
  EXPECT_EQ(cases[0].image, (dir / "ct/").string());
  EXPECT_EQ(cases[2].label, seg);

  // Two images of the same name collide, and the message names both.
  touch(dir / "other/p1_t1.nii.gz");
  const auto dup = error_of([&] {
    discover_cases(DatasetSpec{"brats", "",
                               {{(dir / "p1_t1.nii.gz").string(), seg},
                                {(dir / "other/p1_t1.nii.gz").string(), seg}},
                               {},
                               {}});
  });
  EXPECT_NE(dup.find("'brats/p1_t1' appears twice"), std::string::npos) << dup;
  EXPECT_NE(dup.find("other/p1_t1.nii.gz"), std::string::npos) << dup;

  const auto missing = error_of([&] {
    discover_cases(DatasetSpec{"x", "", {{(dir / "gone").string(), seg}}, {}, {}});
  });
  EXPECT_NE(missing.find("gone: no such file or DICOM series folder"), std::string::npos) << missing;
}

// Multi-channel data as the Decathlon, nnU-Net v1 and nnU-Net v2 lay it out: `channel` by
// index or by the name dataset.json gives it; several channels and none chosen is an error
// that lists them.
TEST(DatasetDiscovery, ChannelsByIndexOrNameInEveryLayout) {
  const std::string names = R"("0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w")";
  auto spec = [](const fs::path& root, const std::string& channel) {
    DatasetSpec s;
    s.root = root.string();
    s.channel = channel;
    return s;
  };

  // The Decathlon: one 4-D file per case; the channel is read from it.
  const fs::path msd = msam::test::temp_dir("channels_msd") + "/Task01_BrainTumour";
  touch(msd / "imagesTr/BRATS_001.nii.gz");
  touch(msd / "labelsTr/BRATS_001.nii.gz");
  touch(msd / "dataset.json", R"({"modality": {)" + names +
                                  R"(}, "training": [{"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}]})");
  auto msg = error_of([&] { discover_cases(spec(msd, "")); });
  EXPECT_NE(msg.find("dataset.json: names 4 channels (0 FLAIR, 1 T1w, 2 t1gd, 3 T2w)"), std::string::npos) << msg;
  auto cases = discover_cases(spec(msd, "flair"));
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].id, "Task01_BrainTumour/BRATS_001");
  EXPECT_EQ(cases[0].channel, std::optional<int64_t>(0));
  EXPECT_EQ(discover_cases(spec(msd, "2"))[0].channel, std::optional<int64_t>(2));
  msg = error_of([&] { discover_cases(spec(msd, "4")); });
  EXPECT_NE(msg.find("names no channel 4"), std::string::npos) << msg;
  msg = error_of([&] { discover_cases(spec(msd, "dwi")); });
  EXPECT_NE(msg.find("channel 'dwi' is not among the channels its dataset.json names (0 FLAIR"), std::string::npos) << msg;

  // nnU-Net v1 keeps that dataset.json but splits the channels into _000N files.
  const fs::path v1 = msam::test::temp_dir("channels_v1") + "/Task001_BrainTumour";
  for (const char* f : {"imagesTr/BRATS_001_0000.nii.gz", "imagesTr/BRATS_001_0001.nii.gz",
                        "imagesTr/BRATS_001_0002.nii.gz", "imagesTr/BRATS_001_0003.nii.gz",
                        "labelsTr/BRATS_001.nii.gz"})
    touch(v1 / f);
  fs::copy_file(msd / "dataset.json", v1 / "dataset.json");
  cases = discover_cases(spec(v1, "T1GD"));
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].image, (v1 / "imagesTr/BRATS_001_0002.nii.gz").string());
  EXPECT_FALSE(cases[0].channel.has_value());  // the file is one channel
  msg = error_of([&] { discover_cases(spec(v1, "")); });
  EXPECT_NE(msg.find("case 'BRATS_001' has channels _0000, _0001, _0002, _0003 (dataset.json: 0 FLAIR"),
            std::string::npos) << msg;

  // nnU-Net v2: a dataset.json without a case list, channel names under "channel_names".
  const fs::path v2 = msam::test::temp_dir("channels_v2") + "/Dataset001_BrainTumour";
  for (const char* f : {"imagesTr/BRATS_001_0000.nii.gz", "imagesTr/BRATS_001_0001.nii.gz",
                        "labelsTr/BRATS_001.nii.gz", "imagesTr/BRATS_002_0000.nii.gz",
                        "labelsTr/BRATS_002.nii.gz"})
    touch(v2 / f);
  touch(v2 / "dataset.json", R"({"channel_names": {"0": "FLAIR", "1": "T1w"}, "labels": {"background": 0}, "file_ending": ".nii.gz"})");
  msg = error_of([&] { discover_cases(spec(v2, "T1w")); });
  EXPECT_NE(msg.find("no channel 1 image for this label: expected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("BRATS_002_0001.nii.gz"), std::string::npos) << msg;
  touch(v2 / "imagesTr/BRATS_002_0001.nii.gz");
  cases = discover_cases(spec(v2, "T1w"));
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[1].image, (v2 / "imagesTr/BRATS_002_0001.nii.gz").string());
  EXPECT_EQ(discover_cases(spec(v2, "0"))[1].image, (v2 / "imagesTr/BRATS_002_0000.nii.gz").string());

  // A name needs a dataset.json that gives names; pairs take an index only.
  const fs::path plain = msam::test::temp_dir("channels_plain");
  touch(plain / "imagesTr/a_0000.nii.gz");
  touch(plain / "labelsTr/a.nii.gz");
  msg = error_of([&] { discover_cases(spec(plain, "FLAIR")); });
  EXPECT_NE(msg.find("channel 'FLAIR' is not a number, and no dataset.json"), std::string::npos) << msg;
  DatasetSpec pairs{"p", "", {{(plain / "imagesTr/a_0000.nii.gz").string(), (plain / "labelsTr/a.nii.gz").string()}}, {}, {}};
  pairs.channel = "1";
  EXPECT_EQ(discover_cases(pairs)[0].channel, std::optional<int64_t>(1));
}

// BraTS as each release distributes it: a folder per case, its sequences and segmentation
// named after it.
TEST(DatasetDiscovery, FilePatternsFindPerCaseFolders) {
  const fs::path root = msam::test::temp_dir("patterns") + "/BraTS2021_Training_Data";
  for (const char* c : {"BraTS2021_00000", "BraTS2021_00002"})
    for (const char* f : {"_flair.nii.gz", "_t1.nii.gz", "_seg.nii.gz"})
      touch(root / c / (std::string(c) + f));
  touch(root / "name_mapping.csv");        // release files beside the case folders
  touch(root / "BraTS2021_00005/notes.txt");  // a folder without the sequence: warned, skipped
  DatasetSpec spec;
  spec.root = root.string();
  spec.image_pattern = "{case}/{case}_flair.nii.gz";
  spec.label_pattern = "{case}/{case}_seg.nii.gz";
  auto cases = discover_cases(spec);
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].id, "BraTS2021_Training_Data/BraTS2021_00000");
  EXPECT_EQ(cases[1].image, (root / "BraTS2021_00002/BraTS2021_00002_flair.nii.gz").string());
  EXPECT_EQ(cases[1].label, (root / "BraTS2021_00002/BraTS2021_00002_seg.nii.gz").string());

  // The case name may sit inside a file name too (a flat folder).
  const fs::path flat = msam::test::temp_dir("patterns") + "/flat";
  touch(flat / "scans/p7-t2f.nii.gz");
  touch(flat / "masks/p7-seg.nii.gz");
  spec.root = flat.string();
  spec.image_pattern = "scans/{case}-t2f.nii.gz";
  spec.label_pattern = "masks/{case}-seg.nii.gz";
  cases = discover_cases(spec);
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].id, "flat/p7");

  fs::remove(flat / "masks/p7-seg.nii.gz");
  auto msg = error_of([&] { discover_cases(spec); });
  EXPECT_NE(msg.find("p7-t2f.nii.gz: no label for this image: expected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("masks/p7-seg.nii.gz"), std::string::npos) << msg;
  spec.image_pattern = "scans/{case}_flair.nii.gz";
  msg = error_of([&] { discover_cases(spec); });
  EXPECT_NE(msg.find("no case matches the image pattern 'scans/{case}_flair.nii.gz'"), std::string::npos) << msg;
  spec.label_pattern = "/masks/{case}-seg.nii.gz";
  msg = error_of([&] { discover_cases(spec); });
  EXPECT_NE(msg.find("file pattern '/masks/{case}-seg.nii.gz' must be relative to the dataset's root"),
            std::string::npos) << msg;
  spec.label_pattern = "";
  msg = error_of([&] { discover_cases(spec); });
  EXPECT_NE(msg.find("give both an image and a label pattern"), std::string::npos) << msg;
}

// ---- splits -----------------------------------------------------------------------------

TEST(Split, DeterministicSixTwoTwo) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back("d/c" + std::to_string(i));
  const auto a = make_split(ids, 7);
  EXPECT_EQ(a.train.size(), 6u);
  EXPECT_EQ(a.val.size(), 2u);
  EXPECT_EQ(a.test.size(), 2u);
  auto shuffled = ids;
  std::reverse(shuffled.begin(), shuffled.end());
  const auto b = make_split(shuffled, 7);  // input order does not matter
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.val, b.val);
  EXPECT_EQ(a.test, b.test);
  const auto c = make_split(ids, 8);
  EXPECT_NE(a.train, c.train);
  std::set<std::string> all(a.train.begin(), a.train.end());
  all.insert(a.val.begin(), a.val.end());
  all.insert(a.test.begin(), a.test.end());
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(make_split({"x", "y"}, 0).train.size(), 2u);  // too few for val/test
}

TEST(Split, ReusedFromJsonAndChecked) {
  const auto path = msam::test::temp_dir("split") + "/split.json";
  std::vector<std::string> ids{"d/a", "d/b", "d/c", "d/d", "d/e"};
  const auto first = load_or_create_split(path, ids, 1);
  ASSERT_TRUE(fs::exists(path));
  const auto again = load_or_create_split(path, ids, 999);  // the file wins over the seed
  EXPECT_EQ(first.train, again.train);
  EXPECT_EQ(first.test, again.test);
  auto fewer = ids;
  fewer.pop_back();
  auto msg = error_of([&] { load_or_create_split(path, fewer, 1); });
  EXPECT_NE(msg.find("'d/e'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no longer exists"), std::string::npos) << msg;
  auto more = ids;
  more.push_back("d/f");
  msg = error_of([&] { load_or_create_split(path, more, 1); });
  EXPECT_NE(msg.find("'d/f'"), std::string::npos) << msg;
}

// ---- preprocessing ----------------------------------------------------------------------

TEST(Preprocess, CropOrPadPlacementFollowsTorchio) {
  auto mask = at::zeros({200, 50, 128}, at::kByte);
  mask.slice(0, 10, 20).slice(1, 10, 21).slice(2, 0, 128).fill_(1);
  const auto r = crop_or_pad_placement(mask, {128, 128, 128});
  // bbox centres 15 (on a voxel), 15.5 (rounded down to 15), 64.
  EXPECT_EQ(r.start, (Index3{15 - 64, 15 - 64, 0}));
  EXPECT_EQ(r.full_shape, (Index3{200, 50, 128}));
  // Odd sizes: torchio moves an on-voxel centre down by half a voxel.
  const auto odd = crop_or_pad_placement(mask, {5, 5, 5});
  EXPECT_EQ(odd.start, (Index3{12, 13, 61}));
}

TEST(Preprocess, PatchFirstEqualsTheWholeVolumePipelineBitForBit) {
  // A CT stored with permuted, flipped axes (and an oblique one), read as ITK's x-fastest
  // buffer is, with a multi-label lesion touching the grid's border: the patch is partly
  // padding, and partly cut off.
  const std::array<double, 9> permuted{0, 0, -1, 1, 0, 0, 0, -1, 0};
  const double c = std::cos(0.3), s = std::sin(0.3);
  const std::array<double, 9> oblique{c, -s, 0, s, c, 0, 0, 0, 1};
  for (const auto& direction : {permuted, oblique}) {
    Geometry g;
    g.direction = direction;
    g.spacing = {0.8, 1.2, 2.5};
    g.origin = {-40, 12, 300};
    const int64_t nx = 70, ny = 60, nz = 30;
    auto zyx = (at::randn({nz, ny, nx}) * 900).round();
    // A constant frame, as around a registered scan: the MR pipeline subtracts it first.
    for (int64_t d = 0; d < 3; ++d) {
      zyx.select(d, 0).fill_(-7);
      zyx.select(d, zyx.size(d) - 1).fill_(-7);
    }
    auto labels = at::zeros({nz, ny, nx}, at::kShort);
    labels.slice(2, 0, 6).slice(1, 50, 60).slice(0, 2, 9).fill_(2);
    labels.slice(2, 3, 9).slice(1, 47, 52).slice(0, 5, 12).fill_(3);
    labels.slice(2, 20, 30).slice(1, 10, 20).slice(0, 10, 20).fill_(1);  // not a target
    const Volume image{zyx.permute({2, 1, 0}), g, "ct.nii.gz"};
    const Volume label{labels.permute({2, 1, 0}), g, "ct_label.nii.gz"};
    ASSERT_FALSE(image.data.is_contiguous());
    for (const auto modality : {Modality::CT, Modality::MR}) {
      const CaseSource src{"d/c", "ct.nii.gz", "ct_label.nii.gz", {2, 3}, modality};
      for (const auto& spacing : {std::optional<Point3>{}, std::optional<Point3>{Point3{1.0, 1.0, 1.0}},
                                  std::optional<Point3>{Point3{1.7, 0.9, 3.1}}}) {
        PreprocessSettings settings;
        settings.patch_size = {32, 24, 16};
        settings.min_label_voxels = 0;
        settings.target_spacing = spacing;
        const auto expected = whole_volume_preprocess(image, label, src, settings);
        for (const Volume& input : {image, Volume{image.data.contiguous(), g, image.source}}) {
          const auto p = preprocess_case(input, label, src, settings);
          EXPECT_TRUE(at::equal(p.image, expected.image));
          EXPECT_EQ(p.image.scalar_type(), at::kFloat);
          EXPECT_TRUE(at::equal(p.label, expected.label));
          EXPECT_EQ(p.label.scalar_type(), at::kByte);
          EXPECT_EQ(p.label_voxels, expected.label_voxels);
          const auto &r = p.record, &e = expected.record;
          EXPECT_EQ(r.crop.start, e.crop.start);
          EXPECT_EQ(r.crop.size, e.crop.size);
          EXPECT_EQ(r.crop.full_shape, e.crop.full_shape);
          EXPECT_EQ(r.ras_shape, e.ras_shape);
          EXPECT_EQ(r.resampled, e.resampled);
          EXPECT_EQ(r.orientation.permutation, e.orientation.permutation);
          EXPECT_EQ(r.orientation.flipped, e.orientation.flipped);
          expect_same_geometry(r.ras_geometry, e.ras_geometry);
          expect_same_geometry(r.grid_geometry, e.grid_geometry);
          expect_same_geometry(r.patch_geometry, e.patch_geometry);
        }
        // The lesion touches the border, so part of the patch is padding (label and image).
        bool padded = false;
        const auto& crop = expected.record.crop;
        for (int d = 0; d < 3; ++d)
          padded = padded || crop.start[d] < 0 || crop.start[d] + crop.size[d] > crop.full_shape[d];
        EXPECT_TRUE(padded);
      }
    }
  }
}

TEST(Preprocess, CountsNonFiniteValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(count_non_finite(at::tensor({1.0f, -3.0f, 1e30f})), 0);
  EXPECT_EQ(count_non_finite(at::tensor({1.0f, nan, 2.0f})), 1);
  EXPECT_EQ(count_non_finite(at::tensor({inf, 0.0f, -inf})), 2);
  EXPECT_EQ(count_non_finite(at::tensor({-inf, 5.0f})), 1);
  EXPECT_EQ(count_non_finite(at::tensor({1.0, std::nan("")}, at::kDouble)), 1);
  EXPECT_EQ(count_non_finite(at::tensor({nan, 1.0f}).to(at::kHalf)), 1);
  EXPECT_EQ(count_non_finite(at::tensor({1, 2}, at::kLong)), 0);
  // Scan-sized, where the min/max shortcut runs vectorised: a lone NaN is found wherever it lies.
  auto scan = at::full({64, 64, 64}, 100.0f);
  for (const int64_t at_voxel : {int64_t{5}, int64_t{64 * 64 * 32 + 64 * 32 + 32}, scan.numel() - 1}) {
    auto flat = scan.clone().view(-1);
    flat[at_voxel] = nan;
    EXPECT_EQ(count_non_finite(flat.view({64, 64, 64})), 1) << at_voxel;
  }
}

TEST(Preprocess, RequireFiniteNamesTheFileAndTheCount) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // A view with the strides of a volume read from a file.
  Volume v{at::rand({5, 4, 3}).permute({2, 1, 0}), {}, "scan.nii.gz"};
  EXPECT_NO_THROW(require_finite(v));
  v.data[0][1][2] = nan;
  EXPECT_EQ(error_of([&] { require_finite(v); }), "scan.nii.gz: 1 voxel is NaN or Inf");
  v.data[2][3][4] = -inf;
  v.data[1][1][1] = inf;
  EXPECT_EQ(error_of([&] { require_finite(v); }), "scan.nii.gz: 3 voxels are NaN or Inf");
  EXPECT_NO_THROW(require_finite(Volume{at::ones({2, 2, 2}, at::kByte), {}, "label.nii.gz"}));
}

TEST(Preprocess, ZScoreOverPositiveOrNonzeroVoxels) {
  auto x = at::tensor({-5.0f, 0.0f, 1.0f, 2.0f, 3.0f});
  // > 0 (CT, the reference's rule): mean 2, unbiased std 1 over {1, 2, 3}; every voxel moves.
  EXPECT_TRUE(at::allclose(zscore(x, ZScoreVoxels::kPositive, "img"),
                           at::tensor({-7.0f, -2.0f, -1.0f, 0.0f, 1.0f})));
  // ≠ 0 (MR and others): over {-5, 1, 2, 3}.
  const auto nz = at::tensor({-5.0f, 1.0f, 2.0f, 3.0f});
  EXPECT_TRUE(at::allclose(zscore(x, ZScoreVoxels::kNonzero, "img"), (x - nz.mean()) / nz.std()));
  EXPECT_EQ(zscore_voxels(Modality::CT), ZScoreVoxels::kPositive);
  EXPECT_EQ(zscore_voxels(Modality::MR), ZScoreVoxels::kNonzero);
  EXPECT_EQ(zscore_voxels(Modality::Other), ZScoreVoxels::kNonzero);
  for (auto over : {ZScoreVoxels::kPositive, ZScoreVoxels::kNonzero}) {
    EXPECT_NE(error_of([&] { zscore(at::zeros({4, 4, 4}), over, "empty.nii"); }).find("empty.nii"),
              std::string::npos);
    EXPECT_NE(error_of([&] { zscore(at::ones({4, 4, 4}), over, "flat.nii"); }).find("flat.nii"),
              std::string::npos);
  }
}

// An MR scan z-scored before it was shared (negative brain values, background 0) prepares to
// the raw scan's brain intensities, as it must for a model trained on raw scans: z-scoring
// over the voxels ≠ 0 is blind to an affine change of the brain's intensities. Over the
// voxels > 0 (the CT rule) it would keep only the brighter half of the brain.
TEST(Preprocess, MrScanZScoredBeforehandPreparesToTheRawBrain) {
  auto [image, label, brain] = skull_stripped_case();
  const auto values = image.data.masked_select(brain);
  Volume zscored = image;
  zscored.data = at::where(brain, (image.data - values.mean()) / values.std(), at::zeros({}));
  ASSERT_LT(zscored.data.min().item<float>(), -1.0f);
  const CaseSource src{"d/c", "img", "lbl", {}, Modality::MR};
  const auto raw = preprocess_case(image, label, src, small_settings());
  const auto pre = preprocess_case(zscored, label, src, small_settings());
  // The brain voxels of the patch: above the value the raw scan's background maps to.
  const auto in_brain = raw.image > raw.image.min() + 1e-3;
  ASSERT_GT(in_brain.sum().item<int64_t>(), 1000);
  EXPECT_TRUE(at::allclose(pre.image.masked_select(in_brain), raw.image.masked_select(in_brain),
                           1e-4, 1e-4));
  // The CT rule on the same patch does not.
  const auto ct_rule = zscore(zscored.data, ZScoreVoxels::kPositive, "img");
  const auto mr_rule = zscore(zscored.data, ZScoreVoxels::kNonzero, "img");
  EXPECT_GT((ct_rule - mr_rule).masked_select(brain).abs().max().item<float>(), 0.5f);
}

TEST(Preprocess, BackgroundValueIsTheBordersMajority) {
  auto skull_stripped = at::zeros({12, 10, 8});
  skull_stripped.slice(0, 2, 10).slice(1, 2, 8).slice(2, 2, 6).uniform_(50, 300);
  EXPECT_EQ(background_value(skull_stripped, Modality::MR), 0.0);
  EXPECT_EQ(background_value(skull_stripped - 0.4375, Modality::MR), -0.4375);
  EXPECT_EQ(background_value(skull_stripped + 100, Modality::Other), 100.0);
  // Integer scans and x-fastest views read as they are.
  EXPECT_EQ(background_value((skull_stripped + 3).to(at::kShort).permute({2, 1, 0}), Modality::MR), 3.0);
  // CT keeps its Hounsfield units, even with a constant fill outside its field of view.
  EXPECT_EQ(background_value(skull_stripped - 1024, Modality::CT), 0.0);
  // No value on more than half of the faces (an unstripped scan's noise): nothing subtracted.
  EXPECT_EQ(background_value(at::rand({12, 10, 8}) + 5, Modality::MR), 0.0);
  auto half = skull_stripped + 9;
  half.slice(0, 0, 6).uniform_(1, 2);
  EXPECT_EQ(background_value(half, Modality::MR), 0.0);
}

// The same skull-stripped MR scan shared z-scored over its whole volume (background −mean/sd)
// or shifted by a constant (background ≠ 0) prepares to the raw scan's patch: without the
// background subtracted, its voxels would count in the z-score as brain.
TEST(Preprocess, MrScanWithANonzeroBackgroundPreparesAsTheRawScan) {
  const auto [image, label, brain] = skull_stripped_case();
  const CaseSource src{"d/c", "img", "lbl", {}, Modality::MR};
  auto settings = small_settings();
  settings.patch_size = {24, 24, 24};  // padded beyond the scan: the padding is background too
  for (const auto& spacing : {std::optional<Point3>{}, std::optional<Point3>{Point3{1.3, 1.3, 1.3}}}) {
    settings.target_spacing = spacing;
    const auto raw = preprocess_case(image, label, src, settings);
    for (const auto& shared : {(image.data - image.data.mean()) / image.data.std(), image.data + 250}) {
      Volume copy = image;
      copy.data = shared;
      ASSERT_NE(background_value(copy.data, Modality::MR), 0.0);
      const auto pre = preprocess_case(copy, label, src, settings);
      EXPECT_TRUE(at::allclose(pre.image, raw.image, 1e-4, 1e-4))
          << (pre.image - raw.image).abs().max().item<float>();
    }
  }
}

TEST(Preprocess, LabelValuesAndTargets) {
  Volume multi{at::tensor({0, 2, 5, 5, 7}, at::kLong).view({5, 1, 1}), {}, "multi.nii"};
  EXPECT_TRUE(at::equal(binarise_label(multi, {5, 7}), at::tensor({0, 0, 1, 1, 1}, at::kByte).view({5, 1, 1})));
  const auto msg = error_of([&] { binarise_label(multi, {}); });
  EXPECT_NE(msg.find("multi.nii"), std::string::npos) << msg;
  EXPECT_NE(msg.find("{0, 2, 5, 7}"), std::string::npos) << msg;
  Volume fractional{at::tensor({0.0f, 0.5f}).view({2, 1, 1}), {}, "frac.nii"};
  EXPECT_NE(error_of([&] { binarise_label(fractional, {}); }).find("fractional"), std::string::npos);
  Volume negative{at::tensor({0, -1}, at::kLong).view({2, 1, 1}), {}, "neg.nii"};
  EXPECT_NE(error_of([&] { binarise_label(negative, {1}); }).find("negative"), std::string::npos);
  // An x-fastest view (as read from a file) keeps its layout: no transposing copy.
  const auto zyx = at::randint(0, 4, {5, 6, 7}, at::kByte);
  const Volume view{zyx.permute({2, 1, 0}), {}, "view.nii"};
  const auto mask = binarise_label(view, {1, 3});
  EXPECT_TRUE(at::equal(mask, ((view.data == 1) | (view.data == 3)).to(at::kByte)));
  EXPECT_EQ(mask.strides(), view.data.strides());
}

TEST(Preprocess, CropCentredPasteBackInverse) {
  // A LPS-stored scan (identity direction) smaller than the patch on one axis: reoriented,
  // cropped on x and y, padded on z.
  auto vols = box_case({40, 30, 12}, {5, 3, 2}, {12, 9, 8}, 3);
  auto &image = vols.first, &label = vols.second;
  image.geometry.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  label.geometry = image.geometry;
  CaseSource src{"d/c", "img", "lbl", {3}, Modality::Other};
  const auto p = preprocess_case(image, label, src, small_settings());
  EXPECT_EQ(p.image.sizes().vec(), (std::vector<int64_t>{16, 16, 16}));
  EXPECT_EQ(p.label.scalar_type(), at::kByte);
  EXPECT_EQ(p.label_voxels, 7 * 6 * 6);
  EXPECT_TRUE(p.record.orientation.flipped[0] && p.record.orientation.flipped[1]);
  // The lesion's bounding box is centred in the patch (torchio rounding: ±half a voxel).
  for (int d = 0; d < 3; ++d) {
    std::vector<int64_t> others;
    for (int o = 0; o < 3; ++o)
      if (o != d) others.push_back(o);
    const auto idx = p.label.sum(others).gt(0).nonzero().flatten();
    const double centre = (idx[0].item<int64_t>() + idx[-1].item<int64_t>() + 1) / 2.0;
    EXPECT_NEAR(centre, 8.0, 0.5) << "axis " << d;
  }
  // Paste-back: the patch's label lands exactly on the original label voxels.
  const auto back = restore_to_original(p.label, p.record);
  EXPECT_TRUE(at::equal(back.data.to(at::kByte), (label.data == 3).to(at::kByte)));
  EXPECT_EQ(back.geometry.origin, image.geometry.origin);
  EXPECT_EQ(back.geometry.direction, image.geometry.direction);
  // Padded voxels are 0 before z-scoring, so they are all -mean/std afterwards.
  const auto pad = p.image.slice(2, 0, 2);
  EXPECT_LT((pad - pad.flatten()[0]).abs().max().item<float>(), 1e-5);
}

TEST(Preprocess, ClampsCtAndNormalises) {
  auto vols = box_case({20, 20, 20}, {5, 5, 5}, {15, 15, 15});
  auto &image = vols.first, &label = vols.second;
  image.data.fill_(3000.0f);
  image.data.slice(0, 0, 10).fill_(500.0f);
  CaseSource src{"d/c", "img", "lbl", {}, Modality::CT};
  const auto p = preprocess_case(image, label, src, small_settings());
  // Clamped to 1000 and 500: two values, z-scored to ±0.707 (unbiased std over equal halves).
  const auto values = std::get<0>(at::_unique(p.image.slice(0, 2, 14).slice(1, 2, 14).slice(2, 2, 14)));
  ASSERT_EQ(values.numel(), 2);
  EXPECT_NEAR(values[0].item<float>(), -values[1].item<float>(), 1e-4);
}

TEST(Preprocess, ErrorsAndSkips) {
  auto vols = box_case({20, 20, 20}, {5, 5, 5}, {8, 8, 8});  // 27 voxels
  auto &image = vols.first, &label = vols.second;
  CaseSource src{"d/c", "img", "lbl", {}, Modality::Other};
  auto s = small_settings();
  s.min_label_voxels = 27;  // "≤ min" is skipped, as in the reference
  try {
    preprocess_case(image, label, src, s);
    FAIL() << "a 27-voxel lesion with min_label_voxels 27 must be skipped";
  } catch (const CaseSkipped& e) {
    EXPECT_NE(std::string(e.what()).find("27 voxels"), std::string::npos) << e.what();
  }
  s.min_label_voxels = 26;
  EXPECT_NO_THROW(preprocess_case(image, label, src, s));

  Volume empty = label;
  empty.data = at::zeros_like(label.data);
  EXPECT_THROW(preprocess_case(image, empty, src, s), CaseSkipped);

  Volume other_shape = label;
  other_shape.data = at::zeros({20, 20, 21}, at::kByte);
  auto msg = error_of([&] { preprocess_case(image, other_shape, src, s); });
  EXPECT_NE(msg.find("lbl.nii.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[20, 20, 21]"), std::string::npos) << msg;

  Volume moved = label;
  moved.geometry.origin[2] += 0.5;
  msg = error_of([&] { preprocess_case(image, moved, src, s); });
  EXPECT_NE(msg.find("origin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.copy_image_geometry"), std::string::npos) << msg;
  s.on_geometry_mismatch = GeometryMismatch::CopyImageGeometry;
  const auto p = preprocess_case(image, moved, src, s);
  EXPECT_EQ(p.record.grid_geometry.origin, image.geometry.origin);

  Volume bad = image;
  bad.data = image.data.clone();
  bad.data[0][0][0] = std::numeric_limits<float>::quiet_NaN();
  msg = error_of([&] { preprocess_case(bad, label, src, s); });
  EXPECT_NE(msg.find("img.nii.gz: 1 voxel is NaN or Inf"), std::string::npos) << msg;
}

// ---- cache ------------------------------------------------------------------------------

namespace {

struct FakeDataset {
  std::vector<CaseSource> cases;
  std::map<std::string, std::pair<Volume, Volume>> volumes;
  CaseReader reader() const {
    return [this](const CaseSource& c) { return volumes.at(c.id); };
  }
};

// Cases whose source files exist (for stamps) and whose volumes live in memory.
FakeDataset fake_dataset(const std::string& dir, int n) {
  FakeDataset d;
  for (int i = 0; i < n; ++i) {
    const auto id = "fake/c" + std::to_string(i);
    const auto image = dir + "/c" + std::to_string(i) + "_img", label = dir + "/c" + std::to_string(i) + "_lbl";
    touch(image);
    touch(label);
    d.cases.push_back({id, image, label, {}, Modality::Other});
    d.volumes[id] = box_case({20, 18, 16}, {2 + i % 5, 3, 4}, {9 + i % 5, 12, 11});
  }
  return d;
}

}  // namespace

TEST(Cache, RoundTripReuseAndInvalidation) {
  const auto dir = msam::test::temp_dir("cache");
  auto data = fake_dataset(dir, 3);
  // One bad case among good ones: reported, the others still prepared.
  data.volumes["fake/c1"].second.data = at::zeros({20, 18, 17}, at::kByte);
  data.volumes["fake/c2"].second.data.zero_().slice(0, 0, 2).slice(1, 0, 2).slice(2, 0, 2).fill_(1);
  const auto settings = small_settings();
  std::vector<std::string> logged;
  auto report = prepare_cache(data.cases, settings, dir + "/cache", data.reader(),
                              [&](const CaseOutcome& o) { logged.push_back(o.case_id); });
  ASSERT_EQ(report.cases.size(), 3u);
  EXPECT_EQ(logged.size(), 3u);
  EXPECT_EQ(report.cases[0].status, CaseOutcome::Status::Prepared);
  EXPECT_EQ(report.cases[1].status, CaseOutcome::Status::Failed);
  EXPECT_NE(report.cases[1].message.find("shape"), std::string::npos);
  EXPECT_EQ(report.cases[2].status, CaseOutcome::Status::Skipped);
  EXPECT_NE(report.cases[2].message.find("min_label_voxels"), std::string::npos);
  EXPECT_EQ(report.summary(), "1 prepared, 0 reused, 1 skipped, 1 failed");
  const auto saved = msam::io::read_file(dir + "/cache/prepare_report.json");
  EXPECT_NE(saved.find("min_label_voxels"), std::string::npos);
  // The file reads back as the report (ranks that prepared a share each merge theirs).
  const auto back = prepare_report_from_json(saved);
  ASSERT_EQ(back.cases.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back.cases[i].case_id, report.cases[i].case_id);
    EXPECT_EQ(back.cases[i].status, report.cases[i].status);
    EXPECT_EQ(back.cases[i].message, report.cases[i].message);
    EXPECT_EQ(back.cases[i].entry, report.cases[i].entry);
  }
  EXPECT_EQ(to_json_text(back), saved);

  // Round trip: F16 image, U8 label, metadata with the record.
  const auto direct = preprocess_case(data.volumes["fake/c0"].first, data.volumes["fake/c0"].second,
                                      data.cases[0], settings);
  const auto cached = read_cache_entry(cache_entry_path(dir + "/cache", "fake/c0"));
  MSAM_EXPECT_CLOSE(cached.image, direct.image, (msam::test::Tol{2e-3, 1e-3}));
  EXPECT_TRUE(at::equal(cached.label, direct.label));
  EXPECT_EQ(cached.info.case_id, "fake/c0");
  EXPECT_EQ(cached.info.record.crop.start, direct.record.crop.start);
  EXPECT_EQ(cached.info.record.patch_geometry.origin, direct.record.patch_geometry.origin);
  EXPECT_EQ(read_cache_info(cache_entry_path(dir + "/cache", "fake/c0")).label_voxels, direct.label_voxels);

  std::vector<std::string> missing;
  const auto entries = cached_entries(dir + "/cache", {"fake/c0", "fake/c1", "fake/c2"}, &missing);
  EXPECT_EQ(entries.size(), 1u);
  EXPECT_EQ(missing, (std::vector<std::string>{"fake/c1", "fake/c2"}));

  const std::vector<CaseSource> good{data.cases[0]};
  EXPECT_EQ(prepare_cache(good, settings, dir + "/cache", data.reader()).cases[0].status, CaseOutcome::Status::Reused);
  auto changed = settings;
  changed.min_label_voxels = 5;
  EXPECT_EQ(prepare_cache(good, changed, dir + "/cache", data.reader()).cases[0].status,
            CaseOutcome::Status::Prepared);
  EXPECT_EQ(prepare_cache(good, changed, dir + "/cache", data.reader()).cases[0].status, CaseOutcome::Status::Reused);
  fs::last_write_time(data.cases[0].label, fs::last_write_time(data.cases[0].label) + std::chrono::seconds(5));
  EXPECT_EQ(prepare_cache(good, changed, dir + "/cache", data.reader()).cases[0].status,
            CaseOutcome::Status::Prepared);
  // A case that becomes unusable loses its stale entry.
  data.volumes["fake/c0"].second.data.zero_();
  EXPECT_EQ(prepare_cache(good, settings, dir + "/cache", data.reader()).cases[0].status, CaseOutcome::Status::Skipped);
  EXPECT_FALSE(fs::exists(cache_entry_path(dir + "/cache", "fake/c0")));
}

// ---- loader -----------------------------------------------------------------------------

TEST(Loader, SameSeedSameBatchesWithTwoWorkers) {
  const auto dir = msam::test::temp_dir("loader");
  const auto data = fake_dataset(dir, 7);
  prepare_cache(data.cases, small_settings(), dir + "/cache", data.reader());
  std::vector<std::string> ids;
  for (const auto& c : data.cases) ids.push_back(c.id);
  const auto entries = cached_entries(dir + "/cache", ids);
  ASSERT_EQ(entries.size(), 7u);

  LoaderOptions opt;
  opt.batch_size = 2;
  opt.workers = 2;
  opt.prefetch = 2;
  opt.augment.random_flips = true;
  opt.seed = 42;
  auto collect = [&](const LoaderOptions& o, int64_t epoch) {
    std::vector<Batch> out;
    EpochLoader loader(entries, o, epoch);
    EXPECT_EQ(loader.num_batches(), o.drop_last ? 3 : 4);
    while (auto b = loader.next()) out.push_back(std::move(*b));
    return out;
  };
  const auto a = collect(opt, 3), b = collect(opt, 3);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a.back().image.size(0), 1);  // the last, short batch
  EXPECT_EQ(a[0].image.sizes().vec(), (std::vector<int64_t>{2, 1, 16, 16, 16}));
  EXPECT_EQ(a[0].label.scalar_type(), at::kByte);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(a[i].entries, b[i].entries);
    EXPECT_TRUE(at::equal(a[i].image, b[i].image));
    EXPECT_TRUE(at::equal(a[i].label, b[i].label));
  }
  // Another epoch reorders; flips are the seeded ones, applied to image and label alike.
  const auto other = collect(opt, 4);
  bool reordered = false;
  for (size_t i = 0; i < a.size(); ++i) reordered |= a[i].entries != other[i].entries;
  EXPECT_TRUE(reordered);
  const auto order = epoch_order(7, 42, 3, true);
  int flipped = 0;
  for (size_t p = 0; p < 7; ++p) {
    const auto f = sample_flips(42, 3, p);
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < 3; ++d)
      if (f[d]) dims.push_back(d);
    flipped += !dims.empty();
    auto c = read_cache_entry(entries[order[p]]);
    if (!dims.empty()) {
      c.image = c.image.flip(dims);
      c.label = c.label.flip(dims);
    }
    EXPECT_TRUE(at::equal(a[p / 2].image[static_cast<int64_t>(p % 2)][0], c.image)) << "sample " << p;
    EXPECT_TRUE(at::equal(a[p / 2].label[static_cast<int64_t>(p % 2)][0], c.label)) << "sample " << p;
  }
  EXPECT_GT(flipped, 0);
  opt.drop_last = true;
  EXPECT_EQ(collect(opt, 3).size(), 3u);
}

TEST(Loader, IntensityAugmentationIsSeededBoundedAndLeavesLabelsAlone) {
  const auto dir = msam::test::temp_dir("loader_intensity");
  const auto data = fake_dataset(dir, 3);
  prepare_cache(data.cases, small_settings(), dir + "/cache", data.reader());
  const auto entries = cached_entries(dir + "/cache", {"fake/c0", "fake/c1", "fake/c2"});
  AugmentOptions aug;
  aug.intensity_scale = 0.2;
  aug.intensity_shift = 0.3;
  double min_scale = 2, max_scale = 0, min_shift = 1, max_shift = -1;
  for (size_t p = 0; p < 200; ++p) {
    const auto a = sample_augmentation(aug, 5, 1, p);
    EXPECT_EQ(a.flips, (std::array<bool, 3>{false, false, false}));  // flips are off
    min_scale = std::min(min_scale, a.scale);
    max_scale = std::max(max_scale, a.scale);
    min_shift = std::min(min_shift, a.shift);
    max_shift = std::max(max_shift, a.shift);
  }
  EXPECT_GE(min_scale, 0.8);
  EXPECT_LE(max_scale, 1.2);
  EXPECT_LT(min_scale, 0.85);  // the whole range is drawn
  EXPECT_GT(max_scale, 1.15);
  EXPECT_GE(min_shift, -0.3);
  EXPECT_LE(max_shift, 0.3);
  EXPECT_LT(min_shift, -0.25);
  EXPECT_GT(max_shift, 0.25);
  // Flips keep their own draw whether or not intensities are augmented.
  aug.random_flips = true;
  EXPECT_EQ(sample_augmentation(aug, 5, 1, 7).flips, sample_flips(5, 1, 7));

  LoaderOptions opt;
  opt.batch_size = 1;
  opt.workers = 1;
  opt.shuffle = false;
  opt.augment = aug;
  opt.augment.random_flips = false;
  opt.seed = 5;
  EpochLoader loader(entries, opt, 1);
  for (size_t p = 0; p < entries.size(); ++p) {
    const auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    const auto c = read_cache_entry(entries[p]);
    const auto a = sample_augmentation(opt.augment, 5, 1, p);
    EXPECT_TRUE(at::allclose(b->image[0][0], c.image * a.scale + a.shift, 1e-6, 1e-6)) << p;
    EXPECT_TRUE(at::equal(b->label[0][0], c.label)) << p;
  }
  // Rotation, zoom and gamma: the loader applies the sample's draw with the patch's spacing.
  opt.augment.rotation_degrees = 20;
  opt.augment.zoom = 0.1;
  opt.augment.gamma = 0.5;
  EpochLoader spatial(entries, opt, 1);
  for (size_t p = 0; p < entries.size(); ++p) {
    const auto b = spatial.next();
    ASSERT_TRUE(b.has_value());
    auto c = read_cache_entry(entries[p]);
    const auto a = sample_augmentation(opt.augment, 5, 1, p);
    EXPECT_TRUE(a.spatial());
    apply_augmentation(a, c.info.record.patch_geometry.spacing, c.image, c.label);
    EXPECT_TRUE(at::equal(b->image[0][0], c.image)) << p;
    EXPECT_TRUE(at::equal(b->label[0][0], c.label)) << p;
  }
  // Off by default: the reference's loader.
  const auto none = sample_augmentation(AugmentOptions{}, 5, 1, 0);
  EXPECT_EQ(none.scale, 1.0);
  EXPECT_EQ(none.shift, 0.0);
}

TEST(Loader, StopsCleanlyAndReportsBadEntries) {
  const auto dir = msam::test::temp_dir("loader_stop");
  const auto data = fake_dataset(dir, 4);
  prepare_cache(data.cases, small_settings(), dir + "/cache", data.reader());
  auto entries = cached_entries(dir + "/cache", {"fake/c0", "fake/c1", "fake/c2", "fake/c3"});
  LoaderOptions opt;
  opt.batch_size = 1;
  opt.shuffle = false;
  {
    EpochLoader early(entries, opt, 0);
    ASSERT_TRUE(early.next().has_value());
  }  // destroyed with batches still pending: joins without hanging
  touch(dir + "/broken.safetensors", "not a safetensors file");
  entries[1] = dir + "/broken.safetensors";
  EpochLoader loader(entries, opt, 0);
  EXPECT_TRUE(loader.next().has_value());
  const auto msg = error_of([&] { loader.next(); });
  EXPECT_NE(msg.find("broken.safetensors"), std::string::npos) << msg;
}

// ---- synthetic lesions --------------------------------------------------------------------

TEST(Synth, LesionsAreVisibleAndDeterministic) {
  int several = 0, anisotropic = 0;
  for (int i = 0; i < 3; ++i) {
    const auto c = make_synthetic_case(5, i);
    EXPECT_EQ(c.image.data.scalar_type(), at::kShort);
    EXPECT_EQ(c.label.data.scalar_type(), at::kByte);
    EXPECT_TRUE(c.image.data.sizes().equals(c.label.data.sizes()));
    const auto mask = c.label.data.to(at::kBool);
    ASSERT_GT(mask.sum().item<int64_t>(), 500) << "case " << i;
    // Lesion and surrounding tissue differ by far more than the noise (contrast ≥ 45 HU).
    const auto hu = c.image.data.to(at::kFloat);
    const auto lesion_mean = hu.masked_select(mask).mean().item<float>();
    const auto ring = at::max_pool3d(mask.to(at::kFloat).unsqueeze(0), 7, 1, 3).squeeze(0).to(at::kBool) & ~mask;
    const auto ring_mean = hu.masked_select(ring).mean().item<float>();
    EXPECT_GT(std::abs(lesion_mean - ring_mean), 20.0f) << "case " << i;
    several += c.lesions > 1;
    anisotropic += c.image.geometry.spacing[2] > 1.5;
  }
  EXPECT_EQ(anisotropic, 1);
  EXPECT_GT(several, 0);
  const auto again = make_synthetic_case(5, 1);
  EXPECT_TRUE(at::equal(again.image.data, make_synthetic_case(5, 1).image.data));
  const auto other_seed = make_synthetic_case(6, 1).image.data;
  EXPECT_FALSE(other_seed.sizes().equals(again.image.data.sizes()) && at::equal(other_seed, again.image.data));
}

TEST(Synth, MaxLesionsCapsTheLesionCount) {
  EXPECT_EQ(make_synthetic_case(5, 3).lesions, 3);
  EXPECT_EQ(make_synthetic_case(5, 3, 1).lesions, 1);
  EXPECT_EQ(make_synthetic_case(5, 3, 2).lesions, 2);
  EXPECT_THROW(make_synthetic_case(5, 3, 0), msam::Error);
}


