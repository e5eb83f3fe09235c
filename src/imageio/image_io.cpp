#include "msam/imageio/image_io.h"

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <itkMetaImageIO.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>
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

// Where pixels come from: one file, or the sorted slices of one DICOM series.
struct Source {
  std::string path;
  std::vector<std::string> dicom_files;  // empty for a single file
  itk::ImageIOBase::Pointer io;          // header already read
  std::shared_ptr<class NiftiAlias> alias;
  const std::string& itk_path() const;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A symlink to `path` alone in a private folder, removed with this object. ITK's NIfTI
// library, asked for x.nii.gz, opens x.nii instead when that file also exists; reading
// through the alias makes it open the file it was given.
class NiftiAlias {
 public:
  explicit NiftiAlias(const std::string& path) {
    static std::atomic<int> counter{0};
    folder_ = std::filesystem::temp_directory_path() /
              ("msam-read-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directory(folder_);
    link_ = (folder_ / std::filesystem::path(path).filename()).string();
    std::filesystem::create_symlink(std::filesystem::absolute(path), link_);
  }
  ~NiftiAlias() {
    std::error_code ec;
    std::filesystem::remove_all(folder_, ec);
  }
  NiftiAlias(const NiftiAlias&) = delete;
  NiftiAlias& operator=(const NiftiAlias&) = delete;
  const std::string& path() const { return link_; }

 private:
  std::filesystem::path folder_;
  std::string link_;
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

const std::string& Source::itk_path() const { return alias ? alias->path() : path; }

bool needs_nifti_alias(const std::string& path) {
  if (!ends_with(path, ".nii.gz")) return false;
  std::error_code ec;
  return std::filesystem::exists(path.substr(0, path.size() - 3), ec);
}

// Bytes of a NIfTI file once decompressed; a damaged gzip stream is an error. ITK's NIfTI
// reader does not notice a short or damaged .nii.gz and returns garbage voxels, so the
// payload is checked before reading.
uint64_t nifti_payload_bytes(const std::string& path) {
  if (!ends_with(path, ".gz")) return std::filesystem::file_size(path);
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw file_error(path, "cannot open");
  std::vector<char> buffer(1 << 20);
  uint64_t total = 0;
  int n = 0;
  while ((n = gzread(f, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) total += n;
  int err = Z_OK;
  const std::string message = gzerror(f, &err);
  gzclose(f);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
    throw file_error(path, "truncated or corrupt gzip data (" + message + ")");
  }
  return total;
}

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
      if (needs_nifti_alias(path)) src.alias = std::make_shared<NiftiAlias>(path);
      src.io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
      if (!src.io) {
        throw file_error(path, "not a readable image (unknown format or corrupt header); "
                               "supported: NIfTI, NRRD, MetaImage, DICOM series folder");
      }
      src.io->SetFileName(src.itk_path());
      src.io->ReadImageInformation();
      if (dynamic_cast<itk::NiftiImageIO*>(src.io.GetPointer())) {
        // NIfTI-1 and -2 headers take at least 348 bytes before the voxels.
        const uint64_t needed = 348 + src.io->GetImageSizeInBytes();
        const uint64_t have = nifti_payload_bytes(path);
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
    if (io.GetDimensions(d) != 1) {
      throw file_error(path, std::to_string(dims) + "-D image with size " +
                                 std::to_string(io.GetDimensions(d)) + " along axis " +
                                 std::to_string(d) +
                                 "; only 3-D volumes (extra axes of size 1) are supported");
    }
  }
  if (io.GetNumberOfComponents() != 1) {
    throw file_error(path, "pixels have " + std::to_string(io.GetNumberOfComponents()) +
                               " components; a scalar image is required");
  }
  return src;
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
    auto reader = itk::ImageFileReader<Image3<T>>::New();
    reader->SetImageIO(src.io);
    reader->SetFileName(src.itk_path());
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

// Copies an ITK buffer (x fastest, i.e. a C-order (Z, Y, X) array) into an (X, Y, Z) tensor.
template <class T>
data::Volume to_volume(Image3<T>* image, at::ScalarType dtype, const std::string& path) {
  const auto size = image->GetLargestPossibleRegion().GetSize();
  const std::vector<int64_t> zyx{static_cast<int64_t>(size[2]), static_cast<int64_t>(size[1]),
                                 static_cast<int64_t>(size[0])};
  data::Volume v;
  v.data = at::from_blob(image->GetBufferPointer(), zyx, at::TensorOptions().dtype(dtype))
               .permute({2, 1, 0})
               .clone(at::MemoryFormat::Contiguous);
  for (int i = 0; i < 3; ++i) {
    v.geometry.spacing[i] = image->GetSpacing()[i];
    v.geometry.origin[i] = image->GetOrigin()[i];
    for (int j = 0; j < 3; ++j) v.geometry.direction[i * 3 + j] = image->GetDirection()(i, j);
  }
  v.source = path;
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

data::Volume read_image(const std::string& path) {
  const Source src = open_source(path);
  auto image = read_pixels<float>(src);
  data::Volume v = to_volume<float>(image.GetPointer(), at::kFloat, path);
  const int64_t bad = v.data.isfinite().logical_not().sum().item<int64_t>();
  if (bad > 0) {
    // Non-finite intensities would silently poison normalisation and training.
    throw file_error(path, std::to_string(bad) + " voxels are NaN or Inf");
  }
  return v;
}

data::Volume read_label(const std::string& path) {
  const Source src = open_source(path);
  data::Volume v;
  if (!src.dicom_files.empty() || !is_integer_component(src.io->GetComponentType())) {
    auto image = read_pixels<double>(src);
    v = to_volume<double>(image.GetPointer(), at::kDouble, path);
    const auto fractional = v.data.isfinite().logical_not() | (v.data != v.data.round());
    const int64_t bad = fractional.sum().item<int64_t>();
    if (bad > 0) {
      throw file_error(path, "label map has " + std::to_string(bad) +
                                 " non-integer voxels (fractional, NaN or Inf), e.g. " +
                                 std::to_string(v.data.masked_select(fractional)[0].item<double>()));
    }
    if (v.data.numel() > 0 && v.data.abs().max().item<double>() > 9.0e18) {
      throw file_error(path, "label values exceed the int64 range");
    }
    v.data = v.data.to(at::kLong);
  } else {
    auto image = read_pixels<long long>(src);
    v = to_volume<long long>(image.GetPointer(), at::kLong, path);
  }
  if (v.data.numel() > 0 && v.data.min().item<int64_t>() >= 0 &&
      v.data.max().item<int64_t>() <= 255) {
    v.data = v.data.to(at::kByte);
  }
  return v;
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
