#include "msam/io/zip_archive.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "msam/common/error.h"

namespace msam::io {
namespace {

constexpr uint32_t kEndOfCentralDir = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDir = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint64_t kEndRecordSize = 22, kLocatorSize = 20, kZip64EndRecordSize = 56;
constexpr uint64_t kCentralHeaderSize = 46, kLocalHeaderSize = 30;

// Little-endian fields of a record already known to lie inside `bytes`.
uint64_t le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

ZipArchive::ZipArchive(const std::string& path) : path_(path) {
  file_.open(path, std::ios::binary);
  if (!file_) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  file_.seekg(0, std::ios::end);
  const std::streamoff size = file_.tellg();
  if (size < 0) throw file_error(path, "cannot determine the file size");
  file_size_ = static_cast<uint64_t>(size);

  // The end-of-central-directory record sits at the end, before a comment of <= 64 KiB.
  const uint64_t tail_size = std::min<uint64_t>(file_size_, kEndRecordSize + 0xffff);
  std::string tail(tail_size, '\0');
  read_at(file_size_ - tail_size, tail.data(), tail_size, "end of archive");
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(tail_size) - static_cast<int64_t>(kEndRecordSize);
       i >= 0; --i) {
    if (le(tail.data() + i, 4) == kEndOfCentralDir &&
        static_cast<uint64_t>(i) + kEndRecordSize + le(tail.data() + i + 20, 2) == tail_size) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0)
    throw file_error(path, "not a ZIP archive (no end-of-central-directory record; truncated, "
                           "or a legacy non-zip torch.save file)");
  const char* e = tail.data() + eocd;
  uint64_t count = le(e + 10, 2), dir_size = le(e + 12, 4), dir_offset = le(e + 16, 4);
  const uint64_t eocd_pos = file_size_ - tail_size + static_cast<uint64_t>(eocd);
  if (count == 0xffff || dir_size == 0xffffffff || dir_offset == 0xffffffff) {
    // ZIP64: a locator right before the record points at the 64-bit end record.
    if (eocd_pos < kLocatorSize) throw file_error(path, "ZIP64 locator missing");
    char loc[kLocatorSize];
    read_at(eocd_pos - kLocatorSize, loc, kLocatorSize, "ZIP64 locator");
    if (le(loc, 4) != kZip64Locator) throw file_error(path, "ZIP64 locator missing");
    char rec[kZip64EndRecordSize];
    read_at(le(loc + 8, 8), rec, kZip64EndRecordSize, "ZIP64 end record");
    if (le(rec, 4) != kZip64EndOfCentralDir) throw file_error(path, "corrupt ZIP64 end record");
    count = le(rec + 32, 8);
    dir_size = le(rec + 40, 8);
    dir_offset = le(rec + 48, 8);
  }
  if (dir_offset > file_size_ || dir_size > file_size_ - dir_offset)
    throw file_error(path, "truncated ZIP archive: central directory [" +
                               std::to_string(dir_offset) + ", +" + std::to_string(dir_size) +
                               ") lies outside the " + std::to_string(file_size_) + "-byte file");
  if (count > dir_size / kCentralHeaderSize)
    throw file_error(path, "corrupt ZIP archive: " + std::to_string(count) +
                               " entries cannot fit a " + std::to_string(dir_size) +
                               "-byte central directory");

  std::string dir(dir_size, '\0');
  read_at(dir_offset, dir.data(), dir_size, "central directory");
  uint64_t pos = 0;
  entries_.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    const auto corrupt = [&](const std::string& why) {
      return file_error(path, "corrupt ZIP central directory entry " + std::to_string(i) + ": " +
                                  why);
    };
    if (dir_size - pos < kCentralHeaderSize) throw corrupt("runs past the directory");
    const char* h = dir.data() + pos;
    if (le(h, 4) != kCentralHeader) throw corrupt("bad signature");
    const uint64_t name_len = le(h + 28, 2), extra_len = le(h + 30, 2), comment_len = le(h + 32, 2);
    if (dir_size - pos - kCentralHeaderSize < name_len + extra_len + comment_len)
      throw corrupt("runs past the directory");
    ZipEntry z;
    z.method = static_cast<uint16_t>(le(h + 10, 2));
    z.crc32 = static_cast<uint32_t>(le(h + 16, 4));
    z.compressed_size = le(h + 20, 4);
    z.size = le(h + 24, 4);
    z.local_header_offset = le(h + 42, 4);
    z.name.assign(h + kCentralHeaderSize, name_len);
    // ZIP64 extra field: 64-bit values for exactly those fields saturated above, in order.
    const char* x = h + kCentralHeaderSize + name_len;
    for (uint64_t xp = 0; xp + 4 <= extra_len;) {
      const uint64_t id = le(x + xp, 2), len = le(x + xp + 2, 2);
      if (xp + 4 + len > extra_len) throw corrupt("extra field runs past its header");
      if (id == 0x0001) {
        uint64_t f = xp + 4;
        for (uint64_t* v : {&z.size, &z.compressed_size, &z.local_header_offset}) {
          if (*v != 0xffffffff) continue;
          if (f + 8 > xp + 4 + len) throw corrupt("short ZIP64 extra field");
          *v = le(x + f, 8);
          f += 8;
        }
      }
      xp += 4 + len;
    }
    // Sizes bound every later allocation: data must fit in the file, and deflate
    // expands at most 1032:1.
    if (z.local_header_offset > file_size_ || z.compressed_size > file_size_ - z.local_header_offset)
      throw corrupt("'" + z.name + "' lies past the end of the " + std::to_string(file_size_) +
                    "-byte file (truncated archive?)");
    if ((z.method == 0 && z.size != z.compressed_size) ||
        (z.method == 8 && z.size > z.compressed_size * 1032 + 1024))
      throw corrupt("'" + z.name + "' has impossible sizes");
    entries_.push_back(std::move(z));
    pos += kCentralHeaderSize + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipArchive::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

void ZipArchive::read_at(uint64_t offset, void* dst, uint64_t n, const char* what) {
  if (offset > file_size_ || n > file_size_ - offset)
    throw file_error(path_, std::string("truncated ZIP archive: ") + what + " at byte " +
                                std::to_string(offset) + " (+" + std::to_string(n) +
                                ") lies past the end of the " + std::to_string(file_size_) +
                                "-byte file");
  file_.clear();
  file_.seekg(static_cast<std::streamoff>(offset));
  file_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (!file_) throw file_error(path_, std::string("read error in ") + what);
}

std::string ZipArchive::read(const std::string& name) {
  const ZipEntry* e = find(name);
  if (!e) throw file_error(path_, "archive has no entry '" + name + "'");
  std::string bytes(e->size, '\0');
  read_into(*e, bytes.data());
  return bytes;
}

void ZipArchive::read_into(const ZipEntry& entry, void* dst) {
  const std::string what = "entry '" + entry.name + "'";
  char local[kLocalHeaderSize];
  read_at(entry.local_header_offset, local, kLocalHeaderSize, what.c_str());
  if (le(local, 4) != kLocalHeader)
    throw file_error(path_, "corrupt ZIP archive: bad local header for " + what);
  // The local name/extra lengths may differ from the central ones (torch pads for alignment).
  const uint64_t data_offset = entry.local_header_offset + kLocalHeaderSize + le(local + 26, 2) +
                               le(local + 28, 2);
  if (entry.method == 0) {
    read_at(data_offset, dst, entry.size, what.c_str());
  } else if (entry.method == 8) {
    std::string packed(entry.compressed_size, '\0');
    read_at(data_offset, packed.data(), entry.compressed_size, what.c_str());
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw Error("zlib: inflateInit2 failed");
    // zlib counts in 32-bit units: feed and drain in chunks.
    constexpr uint64_t kChunk = 1u << 30;
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      if (zs.avail_in == 0 && in_done < packed.size()) {
        const uint64_t n = std::min(kChunk, packed.size() - in_done);
        zs.next_in = reinterpret_cast<Bytef*>(packed.data() + in_done);
        zs.avail_in = static_cast<uInt>(n);
        in_done += n;
      }
      if (zs.avail_out == 0 && out_done < entry.size) {
        const uint64_t n = std::min(kChunk, entry.size - out_done);
        zs.next_out = static_cast<Bytef*>(dst) + out_done;
        zs.avail_out = static_cast<uInt>(n);
        out_done += n;
      }
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_done == packed.size()) break;
      if (rc == Z_BUF_ERROR && zs.avail_out == 0 && out_done == entry.size) break;
      if (rc == Z_BUF_ERROR) rc = Z_OK;
    }
    const uint64_t produced = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != entry.size)
      throw file_error(path_, "corrupt ZIP archive: cannot inflate " + what);
  } else {
    throw file_error(path_, what + " uses unsupported compression method " +
                                std::to_string(entry.method));
  }
  const uLong crc = crc32_z(0L, static_cast<const Bytef*>(dst), entry.size);
  if (crc != entry.crc32)
    throw file_error(path_, "corrupt ZIP archive: CRC mismatch in " + what);
}

}  // namespace msam::io
