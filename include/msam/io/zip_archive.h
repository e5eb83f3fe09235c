// Read-only ZIP archive access for torch.save checkpoints (a .pth file is a ZIP archive).
// Only what such archives use: one disk, stored or deflated entries, ZIP64 sizes/offsets.
// Every offset and length read from the file is checked against the file size, so a
// truncated or corrupt archive is an msam::Error naming the file, never a crash.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace msam::io {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflated
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t local_header_offset = 0;
};

class ZipArchive {
 public:
  // Opens `path` and reads its central directory.
  explicit ZipArchive(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr if the archive has no entry called `name`.
  const ZipEntry* find(const std::string& name) const;

  // The entry's uncompressed bytes (CRC-checked); throws if `name` is absent.
  std::string read(const std::string& name);
  // Writes the entry's `entry.size` uncompressed bytes to `dst` (CRC-checked).
  void read_into(const ZipEntry& entry, void* dst);

 private:
  void read_at(uint64_t offset, void* dst, uint64_t n, const char* what);

  std::string path_;
  std::ifstream file_;
  uint64_t file_size_ = 0;
  std::vector<ZipEntry> entries_;
};

}  // namespace msam::io
