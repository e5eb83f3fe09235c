// Test support: writes a multi-channel scan with ITK, the channels on a 4th axis as the Medical
// Segmentation Decathlon stores its multi-modal MR (no such file ships with the shared data).
#pragma once
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <torch/torch.h>

#include <cstring>
#include <string>
#include <vector>

#include "msam/data/volume.h"

namespace msam::test {

// Writes `channels` ((X, Y, Z) tensors of one shape) to `path` as one 4-D float image whose
// spatial geometry is `geometry`.
inline void write_channels(const std::string& path, const std::vector<torch::Tensor>& channels,
                           const data::Geometry& geometry) {
  using Image4 = itk::Image<float, 4>;
  auto image = Image4::New();
  Image4::SizeType size;
  Image4::SpacingType spacing;
  Image4::PointType origin;
  Image4::DirectionType direction;
  direction.SetIdentity();
  for (int i = 0; i < 3; ++i) {
    size[i] = static_cast<itk::SizeValueType>(channels.front().size(i));
    spacing[i] = geometry.spacing[i];
    origin[i] = geometry.origin[i];
    for (int j = 0; j < 3; ++j) direction(i, j) = geometry.direction[i * 3 + j];
  }
  size[3] = static_cast<itk::SizeValueType>(channels.size());
  spacing[3] = 1;
  origin[3] = 0;
  image->SetRegions(Image4::RegionType(size));
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  image->Allocate();
  float* out = image->GetBufferPointer();
  for (const auto& c : channels) {
    // ITK's buffer is x fastest: a C-order (Z, Y, X) array per channel.
    const auto zyx = c.to(torch::kFloat).permute({2, 1, 0}).contiguous();
    std::memcpy(out, zyx.data_ptr<float>(), zyx.numel() * sizeof(float));
    out += zyx.numel();
  }
  auto writer = itk::ImageFileWriter<Image4>::New();
  writer->SetInput(image);
  writer->SetFileName(path);
  writer->Update();
}

}  // namespace msam::test
