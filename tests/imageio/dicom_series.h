// Test support: writes a DICOM series folder with ITK (no DICOM files ship with the shared data).
#pragma once
#include <itkGDCMImageIO.h>
#include <itkImage.h>
#include <itkImageSeriesWriter.h>
#include <itkMetaDataObject.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace msam::test {

// Writes `zyx` ((Z, Y, X) int16) into `dir` (created if need be) as one axis-aligned CT series,
// a file per slice.
// `series` distinguishes the UIDs of series written by one test. DICOM keeps the geometry per
// slice (position, orientation, pixel spacing), so every slice gets its own dictionary.
inline void write_dicom_series(const std::string& dir, const torch::Tensor& zyx,
                               const std::array<double, 3>& spacing,
                               const std::array<double, 3>& origin, int series = 1) {
  using Image3 = itk::Image<short, 3>;
  std::filesystem::create_directories(dir);
  const auto values = zyx.to(torch::kShort).contiguous();
  const int64_t slices = values.size(0);
  auto image = Image3::New();
  Image3::SizeType size{{static_cast<itk::SizeValueType>(values.size(2)),
                         static_cast<itk::SizeValueType>(values.size(1)),
                         static_cast<itk::SizeValueType>(slices)}};
  image->SetRegions(Image3::RegionType(size));
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), values.data_ptr(), values.numel() * sizeof(short));
  image->SetSpacing(spacing.data());
  image->SetOrigin(origin.data());

  const auto ds = [](double v) {  // a DICOM decimal string
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return std::string(buf);
  };
  const std::string uid = "1.2.826.0.1.3680043.2.1125." + std::to_string(series);
  std::vector<itk::MetaDataDictionary> dicts(static_cast<size_t>(slices));
  std::vector<itk::MetaDataDictionary*> dict_ptrs;
  std::vector<std::string> names;
  for (int64_t z = 0; z < slices; ++z) {
    auto& d = dicts[static_cast<size_t>(z)];
    itk::EncapsulateMetaData<std::string>(d, "0008|0060", "CT");
    itk::EncapsulateMetaData<std::string>(d, "0028|0004", "MONOCHROME2");
    itk::EncapsulateMetaData<std::string>(d, "0008|0016", "1.2.840.10008.5.1.4.1.1.2");
    itk::EncapsulateMetaData<std::string>(d, "0020|000d", uid + ".1");
    itk::EncapsulateMetaData<std::string>(d, "0020|000e", uid + ".2");
    itk::EncapsulateMetaData<std::string>(d, "0008|0018", uid + ".3." + std::to_string(z + 1));
    itk::EncapsulateMetaData<std::string>(d, "0020|0013", std::to_string(z + 1));
    itk::EncapsulateMetaData<std::string>(d, "0020|0037", "1\\0\\0\\0\\1\\0");
    itk::EncapsulateMetaData<std::string>(
        d, "0020|0032", ds(origin[0]) + "\\" + ds(origin[1]) + "\\" + ds(origin[2] + spacing[2] * z));
    itk::EncapsulateMetaData<std::string>(d, "0028|0030", ds(spacing[1]) + "\\" + ds(spacing[0]));
    itk::EncapsulateMetaData<std::string>(d, "0018|0050", ds(spacing[2]));
    dict_ptrs.push_back(&d);
    names.push_back(dir + "/slice" + std::to_string(z) + ".dcm");
  }
  auto io = itk::GDCMImageIO::New();
  io->KeepOriginalUIDOn();
  auto writer = itk::ImageSeriesWriter<Image3, itk::Image<short, 2>>::New();
  writer->SetInput(image);
  writer->SetImageIO(io);
  writer->SetFileNames(names);
  writer->SetMetaDataDictionaryArray(&dict_ptrs);
  writer->Update();
}

}  // namespace msam::test
