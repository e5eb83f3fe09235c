#include "msam/imageio/image_io.h"

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkExtractImageFilter.h>
#include <itkImageSeriesReader.h>
#include <itkMetaImageIO.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>
#include <itkVectorImage.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "msam/common/error.h"

namespace msam::imageio {
namespace {

namespace fs = std::filesystem;
template <class T>
using Image3 = itk::Image<T, 3>;

// How a file holds several channels (MR sequences stacked in one file): on a 4th axis, as
// the Medical Segmentation Decathlon's multi-modal scans do (240×240×155×4 for its brain
// tumours), or as pixel components (NRRD and NIfTI vector images).
struct Channels {
  int64_t count = 1;
  bool as_components = false;
};

// Where pixels come from: one file, or the sorted slices of one DICOM series.
struct Source {
  std::string path;
  std::vector<std::string> dicom_files;  // empty for a single file
  itk::ImageIOBase::Pointer io;          // header already read
  std::shared_ptr<class DecompressedNifti> decompressed;  // for a .nii.gz
  Channels channels;
  const std::string& itk_path() const;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A .nii.gz decompressed once into a private folder (removed with this object), for ITK to
// read. Decompressing checks the gzip stream (length, CRC), which ITK's NIfTI reader does
// not: given a short or damaged .nii.gz it returns garbage voxels. Checking the stream and
// then letting ITK decompress it again cost a second pass over the whole file (about 0.4 s
// for a 512×512×100 CT here, writing and reading the copy far less). And ITK's NIfTI
// library, asked for x.nii.gz, opens x.nii instead when that file also exists; in the
// private folder there is none.
class DecompressedNifti {
 public:
  explicit DecompressedNifti(const std::string& path) {
    static std::atomic<int> counter{0};
    folder_ = fs::temp_directory_path() /
              ("msam-read-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directory(folder_);
    const fs::path name = fs::path(path).filename();
    copy_ = (folder_ / name.stem()).string();  // x.nii.gz -> x.nii
    try {
      decompress(path);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(folder_, ec);
      throw;
    }
  }
  ~DecompressedNifti() {
    std::error_code ec;
    fs::remove_all(folder_, ec);
  }
  DecompressedNifti(const DecompressedNifti&) = delete;
  DecompressedNifti& operator=(const DecompressedNifti&) = delete;
  const std::string& path() const { return copy_; }
  uint64_t bytes() const { return bytes_; }

 private:
  void decompress(const std::string& path) {
    std::unique_ptr<gzFile_s, int (*)(gzFile)> in(gzopen(path.c_str(), "rb"), gzclose);
    if (!in) throw file_error(path, "cannot open");
    std::ofstream out(copy_, std::ios::binary);
    std::vector<char> buffer(1 << 20);
    int n = 0;
    while ((n = gzread(in.get(), buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) {
      out.write(buffer.data(), n);
      bytes_ += static_cast<uint64_t>(n);
    }
    int err = Z_OK;
    const std::string message = gzerror(in.get(), &err);
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
      throw file_error(path, "truncated or corrupt gzip data (" + message + ")");
    }
    out.close();
    if (!out) throw file_error(path, "cannot decompress into " + copy_ + " (disk full?)");
  }

  fs::path folder_;
  std::string copy_;
  uint64_t bytes_ = 0;
};

// MetaIO reads a short .mha/.mhd data block without complaint, so its size is checked
// against the header: CompressedDataSize bytes when compressed, the raw size otherwise.
void check_metaimage_payload(const std::string& path, uint64_t raw_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string line, data_file;
  bool compressed = false;
  uint64_t compressed_size = 0;
  const auto trim = [](std::string t) {
    const auto b = t.find_first_not_of(" \t\r"), e = t.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
  };
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key == "CompressedData") compressed = value == "True";
    if (key == "CompressedDataSize") compressed_size = std::stoull(value);
    if (key == "ElementDataFile") {
      data_file = value;
      break;
    }
  }
  uint64_t available = 0;
  if (data_file == "LOCAL") {
    const auto header_end = in.tellg();
    if (header_end < 0) throw file_error(path, "truncated MetaImage file: no data after the header");
    available = std::filesystem::file_size(path) - static_cast<uint64_t>(header_end);
  } else if (!data_file.empty() && data_file != "LIST" && data_file.find('%') == std::string::npos) {
    const auto data_path = std::filesystem::path(path).parent_path() / data_file;
    std::error_code ec;
    available = std::filesystem::file_size(data_path, ec);
    if (ec) throw file_error(path, "MetaImage data file " + data_path.string() + " is missing");
  } else {
    return;  // slice lists: MetaIO reports missing slices itself
  }
  const uint64_t needed = compressed ? compressed_size : raw_bytes;
  if (available < needed) {
    throw file_error(path, "truncated MetaImage data: " + std::to_string(available) +
                               " bytes, the header needs " + std::to_string(needed));
  }
}

const std::string& Source::itk_path() const { return decompressed ? decompressed->path() : path; }

std::string itk_message(const itk::ExceptionObject& e) {
  std::string d = e.GetDescription();
  while (!d.empty() && (d.back() == '\n' || d.back() == ' ')) d.pop_back();
  return d;
}

Source dicom_series(const std::string& path) {
  Source src;
  src.path = path;
  auto names = itk::GDCMSeriesFileNames::New();
  // Series details split a series whose slices differ in orientation or size, which could
  // not be stacked into one volume anyway.
  names->SetUseSeriesDetails(true);
  names->SetDirectory(path);
  const auto& uids = names->GetSeriesUIDs();
  if (uids.empty()) throw file_error(path, "folder holds no DICOM series");
  if (uids.size() > 1) {
    std::string list;
    for (const auto& uid : uids) list += (list.empty() ? "" : ", ") + uid;
    throw file_error(path, "folder holds " + std::to_string(uids.size()) +
                               " DICOM series (" + list + "); put each series in its own folder");
  }
  src.dicom_files = names->GetFileNames(uids.front());
  auto io = itk::GDCMImageIO::New();
  io->SetFileName(src.dicom_files.front());
  io->ReadImageInformation();
  src.io = io;
  return src;
}

// Opens `path`, reads its header and checks that it describes one scalar 3-D volume.
Source open_source(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw file_error(path, "no such file or folder");
  Source src;
  try {
    if (fs::is_directory(path, ec)) {
      src = dicom_series(path);
    } else {
      src.path = path;
      src.io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
      if (!src.io) {
        throw file_error(path, "not a readable image (unknown format or corrupt header); "
                               "supported: NIfTI, NRRD, MetaImage, DICOM series folder");
      }
      const bool nifti = dynamic_cast<itk::NiftiImageIO*>(src.io.GetPointer()) != nullptr;
      if (nifti && ends_with(path, ".gz")) src.decompressed = std::make_shared<DecompressedNifti>(path);
      src.io->SetFileName(src.itk_path());
      src.io->ReadImageInformation();
      if (nifti) {
        // NIfTI-1 and -2 headers take at least 348 bytes before the voxels.
        const uint64_t needed = 348 + src.io->GetImageSizeInBytes();
        const uint64_t have = src.decompressed ? src.decompressed->bytes() : fs::file_size(path);
        if (have < needed) {
          throw file_error(path, "truncated NIfTI file: " + std::to_string(have) +
                                     " bytes, the header needs at least " +
                                     std::to_string(needed));
        }
      } else if (dynamic_cast<itk::MetaImageIO*>(src.io.GetPointer())) {
        check_metaimage_payload(path, src.io->GetImageSizeInBytes());
      }
    }
  } catch (const itk::ExceptionObject& e) {
    throw file_error(path, "cannot read the image header: " + itk_message(e));
  } catch (const fs::filesystem_error& e) {
    throw file_error(path, std::string("cannot read: ") + e.what());
  }
  const auto& io = *src.io;
  const unsigned dims = io.GetNumberOfDimensions();
  if (dims < 3 && src.dicom_files.empty()) {
    throw file_error(path, std::to_string(dims) + "-D image; a 3-D volume is required");
  }
  for (unsigned d = 3; d < dims; ++d) {
    if (io.GetDimensions(d) == 1) continue;
    if (d != 3 || src.channels.count > 1)
      throw file_error(path, std::to_string(dims) + "-D image with size " +
                                 std::to_string(io.GetDimensions(d)) + " along axis " +
                                 std::to_string(d + 1) +
                                 "; msam reads 3-D volumes and the channels of a 4th axis");
    src.channels.count = static_cast<int64_t>(io.GetDimensions(d));
  }
  if (io.GetNumberOfComponents() != 1) {
    if (!src.dicom_files.empty())
      throw file_error(path, "DICOM series with " + std::to_string(io.GetNumberOfComponents()) +
                                 " components per pixel (colour?); a scalar image is required");
    if (src.channels.count > 1)
      throw file_error(path, "both a 4th axis and " + std::to_string(io.GetNumberOfComponents()) +
                                 " components per pixel; msam reads one set of channels");
    src.channels = {static_cast<int64_t>(io.GetNumberOfComponents()), true};
  }
  return src;
}

// A reader of `src`'s single file as `Image`, its header already read (src.io).
template <class Image>
typename itk::ImageFileReader<Image>::Pointer file_reader(const Source& src) {
  auto reader = itk::ImageFileReader<Image>::New();
  reader->SetImageIO(src.io);
  reader->SetFileName(src.itk_path());
  return reader;
}

template <class T>
typename Image3<T>::Pointer read_pixels(const Source& src) {
  try {
    if (!src.dicom_files.empty()) {
      auto reader = itk::ImageSeriesReader<Image3<T>>::New();
      reader->SetImageIO(itk::GDCMImageIO::New());
      reader->SetFileNames(src.dicom_files);
      reader->Update();
      return reader->GetOutput();
    }
    auto reader = file_reader<Image3<T>>(src);
    reader->Update();
    return reader->GetOutput();
  } catch (const itk::ExceptionObject& e) {
    throw file_error(src.path, "cannot read the image data (truncated or corrupt file?): " +
                                   itk_message(e));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw file_error(src.path, std::string("cannot read the image data: ") + e.what());
  }
}

// Views an ITK buffer (x fastest, i.e. a C-order (Z, Y, X) array) as an (X, Y, Z) tensor;
// the tensor keeps the image alive. A contiguous (X, Y, Z) copy is a full transpose, in
// which every output row gathers one voxel from each slice: for a 512×512×100 CT it cost
// more than decompressing the file, while the preprocessing only needs a patch of it.
template <class T>
data::Volume to_volume(typename Image3<T>::Pointer image, at::ScalarType dtype, const std::string& path) {
  const auto size = image->GetLargestPossibleRegion().GetSize();
  const std::vector<int64_t> zyx{static_cast<int64_t>(size[2]), static_cast<int64_t>(size[1]),
                                 static_cast<int64_t>(size[0])};
  data::Volume v;
  for (int i = 0; i < 3; ++i) {
    v.geometry.spacing[i] = image->GetSpacing()[i];
    v.geometry.origin[i] = image->GetOrigin()[i];
    for (int j = 0; j < 3; ++j) v.geometry.direction[i * 3 + j] = image->GetDirection()(i, j);
  }
  void* buffer = image->GetBufferPointer();
  v.data = at::from_blob(buffer, zyx, [image](void*) {}, at::TensorOptions().dtype(dtype))
               .permute({2, 1, 0});
  v.source = path;
  return v;
}

template <class T>
data::Volume read_volume(const Source& src, at::ScalarType dtype) {
  return to_volume<T>(read_pixels<T>(src), dtype, src.path);
}

std::string describe_channels(const Channels& c) {
  return std::to_string(c.count) + (c.as_components ? " components per pixel" : " channels on a 4th axis");
}

// Channel `channel` of a 4th-axis file, read through ITK's streaming so that only that
// channel's voxels are read. The 4-D direction's spatial 3×3 block is the volume's.
typename Image3<float>::Pointer read_axis_channel(const Source& src, int64_t channel) {
  using Image4 = itk::Image<float, 4>;
  auto reader = file_reader<Image4>(src);
  reader->UpdateOutputInformation();
  auto region = reader->GetOutput()->GetLargestPossibleRegion();
  region.SetIndex(3, region.GetIndex(3) + channel);
  region.SetSize(3, 0);
  auto extract = itk::ExtractImageFilter<Image4, Image3<float>>::New();
  extract->SetInput(reader->GetOutput());
  extract->SetExtractionRegion(region);
  extract->SetDirectionCollapseToSubmatrix();
  extract->Update();
  return extract->GetOutput();
}

// Component `channel` of a vector-pixel file, copied out of the interleaved buffer.
typename Image3<float>::Pointer read_component(const Source& src, int64_t channel) {
  auto reader = file_reader<itk::VectorImage<float, 3>>(src);
  reader->Update();
  const auto vectors = reader->GetOutput();
  auto image = Image3<float>::New();
  image->SetRegions(vectors->GetLargestPossibleRegion());
  image->SetSpacing(vectors->GetSpacing());
  image->SetOrigin(vectors->GetOrigin());
  image->SetDirection(vectors->GetDirection());
  image->Allocate();
  const float* in = vectors->GetBufferPointer();
  float* out = image->GetBufferPointer();
  const auto n = static_cast<int64_t>(image->GetLargestPossibleRegion().GetNumberOfPixels());
  for (int64_t i = 0; i < n; ++i) out[i] = in[i * src.channels.count + channel];
  return image;
}

data::Volume read_channel(const Source& src, int64_t channel) {
  try {
    auto image = src.channels.as_components ? read_component(src, channel)
                                            : read_axis_channel(src, channel);
    return to_volume<float>(image, at::kFloat, src.path);
  } catch (const itk::ExceptionObject& e) {
    throw file_error(src.path, "cannot read channel " + std::to_string(channel) +
                                   " (truncated or corrupt file?): " + itk_message(e));
  }
}

bool in_byte_range(const at::Tensor& data) {
  const auto [min, max] = at::aminmax(data::memory_order(data).data);
  return min.item<int64_t>() >= 0 && max.item<int64_t>() <= 255;
}

// Integer label values, read in the file's own type where a tensor dtype holds it (no
// conversion through int64), as uint8 when every value lies in [0, 255] and int64 otherwise.
data::Volume read_integer_label(const Source& src) {
  using C = itk::IOComponentEnum;
  data::Volume v;
  switch (src.io->GetComponentType()) {
    case C::UCHAR: return read_volume<uint8_t>(src, at::kByte);
    case C::CHAR: v = read_volume<int8_t>(src, at::kChar); break;
    case C::SHORT: v = read_volume<int16_t>(src, at::kShort); break;
    case C::INT: v = read_volume<int32_t>(src, at::kInt); break;
    default: v = read_volume<long long>(src, at::kLong); break;  // unsigned wider than 8 bits, 64-bit
  }
  v.data = v.data.to(v.data.numel() > 0 && in_byte_range(v.data) ? at::kByte : at::kLong);
  return v;
}

// A float-typed label map: every value must be integral. Read as float or double, whichever
// the file holds, so the check is exact.
template <class T>
data::Volume read_float_label(const Source& src, at::ScalarType dtype) {
  data::Volume v = read_volume<T>(src, dtype);
  // Reductions run over the buffer in memory order (see data::memory_order).
  const auto values = data::memory_order(v.data).data;
  const auto fractional = values.isfinite().logical_not() | (values != values.round());
  const int64_t bad = fractional.sum().item<int64_t>();
  if (bad > 0) {
    throw file_error(src.path, "label map has " + std::to_string(bad) +
                                   " non-integer voxels (fractional, NaN or Inf), e.g. " +
                                   std::to_string(values.masked_select(fractional)[0].item<double>()));
  }
  if (values.numel() > 0 && values.abs().max().item<double>() > 9.0e18) {
    throw file_error(src.path, "label values exceed the int64 range");
  }
  v.data = v.data.to(at::kLong);
  if (v.data.numel() > 0 && in_byte_range(v.data)) v.data = v.data.to(at::kByte);
  return v;
}

bool is_integer_component(itk::IOComponentEnum c) {
  using C = itk::IOComponentEnum;
  return c == C::UCHAR || c == C::CHAR || c == C::USHORT || c == C::SHORT || c == C::UINT ||
         c == C::INT || c == C::ULONG || c == C::LONG || c == C::ULONGLONG || c == C::LONGLONG;
}

// ---- writing -------------------------------------------------------------------------

enum class Format { Nifti, NiftiGz, Nrrd, Meta };

Format format_of(const std::string& path) {
  if (ends_with(path, ".nii.gz")) return Format::NiftiGz;
  if (ends_with(path, ".nii")) return Format::Nifti;
  if (ends_with(path, ".nrrd")) return Format::Nrrd;
  if (ends_with(path, ".mha")) return Format::Meta;
  throw file_error(path, "unsupported output extension; use .nii, .nii.gz, .nrrd or .mha");
}

template <class T>
void write_typed(const at::Tensor& xyz, const data::Geometry& g, const std::string& target,
                 Format format) {
  auto image = Image3<T>::New();
  typename Image3<T>::SizeType size;
  typename Image3<T>::SpacingType spacing;
  typename Image3<T>::PointType origin;
  typename Image3<T>::DirectionType direction;
  for (int i = 0; i < 3; ++i) {
    size[i] = static_cast<itk::SizeValueType>(xyz.size(i));
    spacing[i] = g.spacing[i];
    origin[i] = g.origin[i];
    for (int j = 0; j < 3; ++j) direction(i, j) = g.direction[i * 3 + j];
  }
  image->SetRegions(typename Image3<T>::RegionType(size));
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  image->Allocate();
  const at::Tensor zyx = xyz.permute({2, 1, 0}).contiguous();
  std::memcpy(image->GetBufferPointer(), zyx.data_ptr(), zyx.numel() * sizeof(T));

  auto writer = itk::ImageFileWriter<Image3<T>>::New();
  switch (format) {
    case Format::Nifti:
    case Format::NiftiGz: writer->SetImageIO(itk::NiftiImageIO::New()); break;
    case Format::Nrrd: writer->SetImageIO(itk::NrrdImageIO::New()); break;
    case Format::Meta: writer->SetImageIO(itk::MetaImageIO::New()); break;
  }
  writer->SetUseCompression(format != Format::Nifti);
  writer->SetFileName(target);
  writer->SetInput(image);
  writer->Update();
}

}  // namespace

data::Volume read_image(const std::string& path, std::optional<int64_t> channel) {
  const Source src = open_source(path);
  const int64_t count = src.channels.count;
  if (channel && (*channel < 0 || *channel >= count))
    throw file_error(path, count == 1 ? "has one channel (0); channel " + std::to_string(*channel) +
                                            " does not exist"
                                      : "channel " + std::to_string(*channel) + " does not exist: " +
                                            describe_channels(src.channels) + " (0–" +
                                            std::to_string(count - 1) + ")");
  if (count > 1 && !channel)
    throw file_error(path, describe_channels(src.channels) +
                               " (several scans in one file, e.g. MR sequences): choose one with "
                               "the channel option (0–" + std::to_string(count - 1) + ")");
  data::Volume v = count > 1 ? read_channel(src, *channel) : read_volume<float>(src, at::kFloat);
  data::require_finite(v);
  return v;
}

data::Volume read_label(const std::string& path) {
  const Source src = open_source(path);
  if (src.channels.count > 1)
    throw file_error(path, "label map with " + describe_channels(src.channels) +
                               "; a 3-D label map is required");
  if (!src.dicom_files.empty() || !is_integer_component(src.io->GetComponentType())) {
    return src.dicom_files.empty() && src.io->GetComponentType() == itk::IOComponentEnum::FLOAT
               ? read_float_label<float>(src, at::kFloat)
               : read_float_label<double>(src, at::kDouble);
  }
  return read_integer_label(src);
}

void write_volume(const std::string& path, const data::Volume& volume) {
  const Format format = format_of(path);
  const at::Tensor& t = volume.data;
  if (!t.defined() || t.dim() != 3) {
    throw file_error(path, "can only write a 3-D (X, Y, Z) tensor, got " +
                               (t.defined() ? std::to_string(t.dim()) + "-D" : "none"));
  }
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw file_error(path, "output folder does not exist");
  // Same folder, so the rename is atomic; the name keeps the extension that picks the format.
  static std::atomic<int> counter{0};
  const fs::path tmp = folder / (".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(counter++) + "-" +
                                 target.filename().string());
  const at::Tensor cpu = t.cpu();
  try {
    switch (cpu.scalar_type()) {
      case at::kFloat: write_typed<float>(cpu, volume.geometry, tmp, format); break;
      case at::kDouble: write_typed<double>(cpu, volume.geometry, tmp, format); break;
      case at::kHalf:
      case at::kBFloat16: write_typed<float>(cpu.to(at::kFloat), volume.geometry, tmp, format); break;
      case at::kBool:
      case at::kByte: write_typed<unsigned char>(cpu.to(at::kByte), volume.geometry, tmp, format); break;
      case at::kChar: write_typed<signed char>(cpu, volume.geometry, tmp, format); break;
      case at::kShort: write_typed<short>(cpu, volume.geometry, tmp, format); break;
      case at::kInt: write_typed<int>(cpu, volume.geometry, tmp, format); break;
      case at::kLong: write_typed<long long>(cpu, volume.geometry, tmp, format); break;
      default:
        throw file_error(path, std::string("cannot write tensors of dtype ") +
                                   c10::toString(cpu.scalar_type()));
    }
    fs::rename(tmp, target);
  } catch (const itk::ExceptionObject& e) {
    fs::remove(tmp, ec);
    throw file_error(path, "write failed: " + itk_message(e));
  } catch (const fs::filesystem_error& e) {
    fs::remove(tmp, ec);
    throw file_error(path, std::string("write failed: ") + e.what());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace msam::imageio
