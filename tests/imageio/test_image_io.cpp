#include <gtest/gtest.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkVectorImage.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "dicom_series.h"
#include "fixtures.h"
#include "multi_channel.h"
#include "msam/common/error.h"
#include "msam/data/geometry_ops.h"
#include "msam/imageio/image_io.h"

using namespace msam;
namespace fs = std::filesystem;

namespace {

data::Geometry oblique_geometry() {
  // A proper rotation (30° about z), anisotropic spacing, arbitrary origin.
  const double c = std::cos(M_PI / 6), s = std::sin(M_PI / 6);
  data::Geometry g;
  g.direction = {c, -s, 0, s, c, 0, 0, 0, 1};
  g.spacing = {0.75, 1.25, 2.5};
  g.origin = {-12.5, 33.0, 101.25};
  return g;
}

void expect_geometry_near(const data::Geometry& a, const data::Geometry& b, double tol) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.spacing[i], b.spacing[i], tol) << "spacing " << i;
    EXPECT_NEAR(a.origin[i], b.origin[i], tol) << "origin " << i;
  }
  for (int k = 0; k < 9; ++k) EXPECT_NEAR(a.direction[k], b.direction[k], tol) << "direction " << k;
}

// Runs `f`, expecting an msam::Error whose message contains every string in `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no msam::Error thrown";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

}  // namespace

TEST(ImageIO, RoundTripKeepsValuesAndGeometry) {
  const std::string dir = test::temp_dir("imageio_rt");
  const auto image = torch::randn({7, 5, 3});
  const auto labels = torch::randint(0, 4, {7, 5, 3}, torch::kByte);
  const auto big_labels = torch::randint(0, 300, {7, 5, 3}, torch::kLong) - 20;
  for (const std::string ext : {".nii", ".nii.gz", ".nrrd", ".mha"}) {
    SCOPED_TRACE(ext);
    const std::string path = dir + "/image" + ext;
    imageio::write_volume(path, data::Volume{image, oblique_geometry(), ""});
    const data::Volume back = imageio::read_image(path);
    EXPECT_EQ(back.data.scalar_type(), at::kFloat);
    EXPECT_TRUE(torch::equal(back.data, image));
    EXPECT_EQ(back.source, path);
    // NIfTI stores its affine in float32.
    expect_geometry_near(back.geometry, oblique_geometry(), 1e-5);

    const std::string label_path = dir + "/label" + ext;
    imageio::write_volume(label_path, data::Volume{labels, oblique_geometry(), ""});
    const data::Volume lab = imageio::read_label(label_path);
    EXPECT_EQ(lab.data.scalar_type(), at::kByte);
    EXPECT_TRUE(torch::equal(lab.data, labels));

    imageio::write_volume(label_path, data::Volume{big_labels, oblique_geometry(), ""});
    const data::Volume big = imageio::read_label(label_path);
    EXPECT_EQ(big.data.scalar_type(), at::kLong);
    EXPECT_TRUE(torch::equal(big.data, big_labels));
  }
  // label.nii and label.nii.gz coexist with different contents: each read got its own file.
  // Nothing but the written files is left behind (the temporaries were renamed).
  EXPECT_EQ(folder_entries(dir).size(), 8u);
}

TEST(ImageIO, LungCtIsFiveDimensionalAndSqueezed) {
  const data::Volume image = imageio::read_image(test::data_path("msam_lung_ct/image.nii.gz"));
  EXPECT_EQ(image.data.sizes(), (at::IntArrayRef{128, 128, 128}));
  EXPECT_EQ(image.data.scalar_type(), at::kFloat);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(image.geometry.spacing[i], 1.0, 1e-6);
  const data::Volume label = imageio::read_label(test::data_path("msam_lung_ct/label.nii.gz"));
  EXPECT_EQ(label.data.sizes(), (at::IntArrayRef{128, 128, 128}));
  EXPECT_EQ(label.data.scalar_type(), at::kByte);
  EXPECT_EQ(label.data.sum().item<int64_t>(), 2719);
  EXPECT_EQ(label.data.max().item<int64_t>(), 1);
}

TEST(ImageIO, BreastMrNrrdIsAnisotropic) {
  const data::Volume image = imageio::read_image(test::data_path("breast_mr/image.nrrd"));
  EXPECT_EQ(image.data.sizes(), (at::IntArrayRef{45, 120, 21}));
  EXPECT_EQ(image.data.scalar_type(), at::kFloat);
  EXPECT_NEAR(image.geometry.spacing[0], 0.66, 0.01);
  EXPECT_NEAR(image.geometry.spacing[1], 0.66, 0.01);
  EXPECT_NEAR(image.geometry.spacing[2], 2.1, 0.01);
  // int16 intensities arrive as integral floats.
  EXPECT_TRUE(torch::equal(image.data, image.data.round()));
  const data::Volume label = imageio::read_label(test::data_path("breast_mr/label.nrrd"));
  EXPECT_EQ(label.data.sizes(), image.data.sizes());
  EXPECT_EQ(label.data.sum().item<int64_t>(), 143);
  expect_geometry_near(label.geometry, image.geometry, 1e-6);
}

TEST(ImageIO, AbdomenMultiLabel) {
  const data::Volume image = imageio::read_image(test::data_path("abdomen_ct_organs/image.nii.gz"));
  EXPECT_EQ(image.data.sizes(), (at::IntArrayRef{122, 101, 30}));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(image.geometry.spacing[i], 3.0, 1e-5);
  const data::Volume label = imageio::read_label(test::data_path("abdomen_ct_organs/label.nii.gz"));
  EXPECT_EQ(label.data.scalar_type(), at::kByte);
  const auto values = std::get<0>(at::_unique(label.data));
  EXPECT_EQ(values[0].item<int64_t>(), 0);  // background
  EXPECT_EQ(values.numel(), 1 + 41);
  EXPECT_EQ(label.data.max().item<int64_t>(), 117);
}

TEST(ImageIO, ErrorsNameTheFile) {
  const std::string dir = test::temp_dir("imageio_err");
  const std::string missing = dir + "/missing.nii.gz";
  expect_error([&] { imageio::read_image(missing); }, {missing, "no such file"});

  // A .nii.gz cut in half.
  const std::string truncated = dir + "/truncated.nii.gz";
  {
    std::ifstream in(test::data_path("abdomen_ct_organs/image.nii.gz"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary).write(bytes.data(), bytes.size() / 2);
  }
  expect_error([&] { imageio::read_image(truncated); }, {truncated, "truncated"});

  // Truncated compressed NRRD and MetaImage files.
  for (const std::string ext : {".nrrd", ".mha"}) {
    SCOPED_TRACE(ext);
    const std::string whole = dir + "/whole" + ext, cut = dir + "/cut" + ext;
    imageio::write_volume(whole, data::Volume{torch::randn({40, 30, 20}), {}, ""});
    std::ifstream in(whole, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(cut, std::ios::binary).write(bytes.data(), bytes.size() / 2);
    expect_error([&] { imageio::read_image(cut); }, {cut});
  }

  const std::string garbage = dir + "/garbage.nii";
  std::ofstream(garbage) << "not an image";
  expect_error([&] { imageio::read_image(garbage); }, {garbage});

  const std::string fractional = dir + "/fractional.nii.gz";
  auto values = torch::zeros({4, 4, 4});
  values[1][2][3] = 0.5;
  values[0][0][0] = 2.25;
  imageio::write_volume(fractional, data::Volume{values, {}, ""});
  expect_error([&] { imageio::read_label(fractional); }, {fractional, "2 non-integer"});

  const std::string nan = dir + "/nan.nrrd";
  values[3][3][3] = std::nan("");
  values[2][2][2] = INFINITY;
  imageio::write_volume(nan, data::Volume{values, {}, ""});
  expect_error([&] { imageio::read_image(nan); }, {nan, "2 voxels are NaN or Inf"});

  expect_error([&] { imageio::write_volume(dir + "/x.png", data::Volume{values, {}, ""}); },
               {"x.png", "extension"});
  expect_error([&] { imageio::write_volume(dir + "/no/x.nii", data::Volume{values, {}, ""}); },
               {"no/x.nii", "folder"});
  expect_error([&] { imageio::write_volume(dir + "/x.nii", data::Volume{torch::zeros({2, 2}), {}, ""}); },
               {"x.nii", "3-D"});
}

TEST(ImageIO, ChannelsOnAFourthAxisOrAsComponents) {
  const std::string dir = test::temp_dir("imageio_4d");
  // Three channels of a 4×5×6 volume, channel c holding c * 1000 + the voxel's index.
  const auto zyx = torch::arange(120, torch::kFloat).reshape({6, 5, 4});
  const auto xyz = zyx.permute({2, 1, 0});
  const data::Geometry g = oblique_geometry();

  const std::string path = dir + "/sequences.nii.gz";
  test::write_channels(path, {xyz, xyz + 1000, xyz + 2000}, g);

  for (int c = 0; c < 3; ++c) {
    const auto v = imageio::read_image(path, c);
    ASSERT_EQ(v.data.sizes(), (at::IntArrayRef{4, 5, 6}));
    EXPECT_TRUE(torch::equal(v.data, (zyx + 1000 * c).permute({2, 1, 0}))) << "channel " << c;
    expect_geometry_near(v.geometry, g, 1e-5);
  }
  expect_error([&] { imageio::read_image(path); }, {path, "3 channels on a 4th axis", "channel option (0–2)"});
  expect_error([&] { imageio::read_image(path, 3); }, {path, "channel 3 does not exist", "(0–2)"});
  expect_error([&] { imageio::read_label(path); }, {path, "label map with 3 channels"});

  // A single-channel file takes channel 0 and no other.
  const std::string single = dir + "/single.nii";
  imageio::write_volume(single, data::Volume{zyx.permute({2, 1, 0}), g, ""});
  EXPECT_TRUE(torch::equal(imageio::read_image(single, 0).data, imageio::read_image(single).data));
  expect_error([&] { imageio::read_image(single, 1); }, {single, "has one channel (0); channel 1 does not exist"});

  // Vector pixels (NRRD): the same channels as components.
  using Vector3 = itk::VectorImage<float, 3>;
  auto vectors = Vector3::New();
  vectors->SetRegions(Vector3::RegionType(Vector3::SizeType{{4, 5, 6}}));
  vectors->SetNumberOfComponentsPerPixel(3);
  vectors->Allocate();
  const auto interleaved = torch::stack({zyx, zyx + 1000, zyx + 2000}, -1).contiguous();
  std::memcpy(vectors->GetBufferPointer(), interleaved.data_ptr<float>(), 360 * sizeof(float));
  const std::string nrrd = dir + "/vectors.nrrd";
  auto vector_writer = itk::ImageFileWriter<Vector3>::New();
  vector_writer->SetInput(vectors);
  vector_writer->SetFileName(nrrd);
  vector_writer->Update();
  EXPECT_TRUE(torch::equal(imageio::read_image(nrrd, 2).data, (zyx + 2000).permute({2, 1, 0})));
  expect_error([&] { imageio::read_image(nrrd); }, {nrrd, "3 components per pixel", "channel"});

  // A second non-singleton axis beyond the third is not a set of channels.
  using Image5 = itk::Image<float, 5>;
  auto five = Image5::New();
  five->SetRegions(Image5::RegionType(Image5::SizeType{{3, 3, 3, 2, 2}}));
  five->Allocate(true);
  const std::string five_path = dir + "/five.nrrd";
  auto five_writer = itk::ImageFileWriter<Image5>::New();
  five_writer->SetInput(five);
  five_writer->SetFileName(five_path);
  five_writer->Update();
  expect_error([&] { imageio::read_image(five_path, 0); }, {five_path, "5-D", "axis 5"});
}

TEST(ImageIO, DicomSeriesFolder) {
  const std::string dir = test::temp_dir("imageio_dicom");
  const auto values = torch::randint(-1000, 1000, {4, 5, 6}, torch::kShort);  // (Z, Y, X)
  test::write_dicom_series(dir, values, {0.8, 0.9, 2.0}, {-10.0, 20.0, -30.0});

  const data::Volume v = imageio::read_image(dir);
  ASSERT_EQ(v.data.sizes(), (at::IntArrayRef{6, 5, 4}));
  EXPECT_TRUE(torch::equal(v.data, values.permute({2, 1, 0}).to(torch::kFloat)));
  data::Geometry expected;
  expected.spacing = {0.8, 0.9, 2.0};
  expected.origin = {-10.0, 20.0, -30.0};
  expect_geometry_near(v.geometry, expected, 1e-4);

  expect_error([&] { imageio::read_image(test::temp_dir("imageio_empty")); }, {"no DICOM series"});
}

TEST(ImageIO, RealScansReorientToRas) {
  for (const std::string name : {"msam_lung_ct/label.nii.gz", "breast_mr/label.nrrd",
                                 "abdomen_ct_organs/label.nii.gz"}) {
    SCOPED_TRACE(name);
    const data::Volume label = imageio::read_label(test::data_path(name));
    const auto r = data::reorient_to_ras(label);
    // RAS+ in LPS terms: the diagonal of the new direction is (-, -, +) and dominant.
    EXPECT_LT(r.volume.geometry.direction[0], -0.9);
    EXPECT_LT(r.volume.geometry.direction[4], -0.9);
    EXPECT_GT(r.volume.geometry.direction[8], 0.9);
    EXPECT_EQ(r.volume.data.sum().item<int64_t>(), label.data.sum().item<int64_t>());
    EXPECT_TRUE(torch::equal(data::undo_reorient(r.volume.data, r.record).data, label.data));
  }
}

// The whole-scan path: read, reorient, resample, crop a 128³ ROI, "predict" (here: the crop
// itself), paste back, resample back, undo the reorientation, write, read.
TEST(ImageIO, WholeScanRoundTripRestoresTheLabelInTheRoi) {
  const std::string path = test::data_path("abdomen_ct_organs/label.nii.gz");
  const data::Volume label = imageio::read_label(path);
  const data::Volume mask{(label.data == 5).to(at::kByte), label.geometry, path};
  const auto ras = data::reorient_to_ras(mask);
  const data::Volume fine = data::resample(ras.volume, {1.5, 1.5, 1.5}, data::Interp::Nearest);
  ASSERT_EQ(fine.data.sizes(), (at::IntArrayRef{244, 202, 60}));  // 3 mm -> 1.5 mm, factor 2
  const auto nz = fine.data.nonzero().to(at::kDouble).mean(0);
  const data::Index3 centre{std::llround(nz[0].item<double>()), std::llround(nz[1].item<double>()),
                            std::llround(nz[2].item<double>())};
  const data::Roi roi = data::extract_roi(fine.data, centre);
  const at::Tensor pasted = data::paste_roi(roi.crop, roi.record);
  const data::Volume coarse = data::resample_onto(
      data::Volume{pasted, fine.geometry, path},
      {ras.volume.data.size(0), ras.volume.data.size(1), ras.volume.data.size(2)},
      ras.volume.geometry, data::Interp::Nearest);
  const data::Volume back = data::undo_reorient(coarse.data, ras.record);

  const std::string out = test::temp_dir("imageio_scan") + "/mask.nii.gz";
  imageio::write_volume(out, back);
  const data::Volume written = imageio::read_label(out);
  expect_geometry_near(written.geometry, label.geometry, 1e-5);

  // A coarse voxel k is the fine voxel 2k+1 (ties round up), so it is restored exactly when
  // that voxel lies in the ROI and is 0 otherwise.
  at::Tensor covered = torch::ones_like(ras.volume.data);
  for (int i = 0; i < 3; ++i) {
    const auto k = torch::arange(ras.volume.data.size(i), torch::kLong) * 2 + 1;
    const auto inside = (k >= roi.record.start[i]) & (k < roi.record.start[i] + 128);
    std::vector<int64_t> view{1, 1, 1};
    view[i] = -1;
    covered = covered * inside.to(at::kByte).view(view);
  }
  const at::Tensor expected = data::undo_reorient(ras.volume.data * covered, ras.record).data;
  EXPECT_TRUE(torch::equal(written.data, expected));
  EXPECT_GT(expected.sum().item<int64_t>(), 0);
}
