#include "msam/io/png.h"

#include <zlib.h>

#include <cstdint>
#include <limits>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"

namespace msam::io {
namespace {

void put_u32_be(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

// length, type, data, CRC over type + data.
void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out.size();
  out.append(type, 4);
  out += data;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + type_at), 4 + data.size());
  put_u32_be(out, static_cast<uint32_t>(crc));
}

}  // namespace

std::string encode_png(const at::Tensor& image) {
  if (!image.defined()) throw Error("encode_png: image tensor is undefined");
  if (image.scalar_type() != at::kByte)
    throw Error(std::string("encode_png: expected a uint8 tensor, got ") +
                c10::toString(image.scalar_type()));
  const bool rgb = image.dim() == 3;
  if (!(image.dim() == 2 || (rgb && image.size(2) == 3)))
    throw Error("encode_png: expected shape (H, W) or (H, W, 3), got " +
                c10::str(image.sizes()));
  const int64_t height = image.size(0), width = image.size(1);
  // PNG dimensions are 31-bit; each zlib call takes a uLong length.
  constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max();
  if (height == 0 || width == 0 || height > kMaxSide || width > kMaxSide)
    throw Error("encode_png: image size " + c10::str(image.sizes()) + " cannot be a PNG");

  const at::Tensor pixels = image.cpu().contiguous();
  const int64_t row_bytes = width * (rgb ? 3 : 1);
  // Filter type 0 (None) on every scanline: figures are mostly flat areas, which deflate
  // compresses well without prediction.
  std::string raw;
  raw.reserve(static_cast<size_t>(height * (row_bytes + 1)));
  const char* src = reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>());
  for (int64_t r = 0; r < height; ++r) {
    raw.push_back('\0');
    raw.append(src + r * row_bytes, static_cast<size_t>(row_bytes));
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  const int rc = compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                           reinterpret_cast<const Bytef*>(raw.data()),
                           static_cast<uLong>(raw.size()), Z_DEFAULT_COMPRESSION);
  if (rc != Z_OK) throw Error("encode_png: zlib compress2 failed with code " + std::to_string(rc));
  packed.resize(packed_size);

  std::string header;
  put_u32_be(header, static_cast<uint32_t>(width));
  put_u32_be(header, static_cast<uint32_t>(height));
  header.push_back(8);                         // bit depth
  header.push_back(rgb ? 2 : 0);               // colour type: truecolour or greyscale
  header.append(3, '\0');                      // deflate, adaptive filtering, no interlace

  std::string out("\x89PNG\r\n\x1a\n", 8);
  put_chunk(out, "IHDR", header);
  put_chunk(out, "IDAT", packed);
  put_chunk(out, "IEND", "");
  return out;
}

void write_png(const std::string& path, const at::Tensor& image) {
  std::string bytes;
  try {
    bytes = encode_png(image);
  } catch (const Error& e) {
    throw file_error(path, e.what());
  }
  write_file_atomically(path, bytes);
}

}  // namespace msam::io
