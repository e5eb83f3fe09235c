#include "msam/serve/scan_files.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "msam/common/error.h"
#include "msam/imageio/image_io.h"

namespace fs = std::filesystem;

namespace msam::serve {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A private folder that is removed with this object.
class TempFolder {
 public:
  TempFolder() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("msam-serve-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::replace);
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  fs::path file(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

bool within(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q)
    if (q == p.end() || *r != *q) return false;
  return true;
}

}  // namespace

std::string resolve_under_root(const std::string& root, const std::string& relative) {
  if (relative.empty()) throw PathNotFound("empty path");
  std::error_code ec;
  const fs::path base = fs::canonical(root, ec);
  if (ec) throw Error("--data-root " + root + ": " + ec.message());
  const fs::path given(relative);
  const fs::path joined = given.is_absolute() ? given : base / given;
  // Refuse `..` outright, before looking at the file system: no probing outside the root.
  for (const auto& part : given)
    if (part == "..") throw PathOutsideRoot(relative + ": '..' is not allowed");
  if (!within(base, joined.lexically_normal()))
    throw PathOutsideRoot(relative + ": outside the data root");
  const fs::path resolved = fs::canonical(joined, ec);
  if (ec) throw PathNotFound(relative + ": no such file or folder under the data root");
  // A symbolic link may point anywhere: judge where it leads.
  if (!within(base, resolved)) throw PathOutsideRoot(relative + ": leads outside the data root");
  return resolved.string();
}

std::string scan_extension(const std::string& filename, const std::string& bytes) {
  const auto name = lower(filename);
  for (const char* ext : {".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha"})
    if (ends_with(name, ext)) return ext;
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
      static_cast<unsigned char>(bytes[1]) == 0x8b)
    return ".nii.gz";  // gzip: the only compressed single-file format taken
  if (bytes.compare(0, 4, "NRRD") == 0) return ".nrrd";
  if (bytes.compare(0, 10, "ObjectType") == 0) return ".mha";
  if (bytes.size() >= 348 && (bytes.compare(344, 4, std::string("n+1\0", 4)) == 0))
    return ".nii";
  return "";
}

data::Volume read_scan_bytes(const std::string& bytes, const std::string& name,
                             std::optional<int64_t> channel) {
  const auto ext = scan_extension(name, bytes);
  if (ext.empty() || ext == ".nhdr")
    throw Error(name + ": not a NIfTI, NRRD or MetaImage (.mha) file");
  TempFolder folder;
  const auto path = folder.file("upload" + ext);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw Error(name + ": cannot store the upload in " + path.string());
  }
  try {
    auto volume = imageio::read_image(path.string(), channel);
    volume.source = name;
    return volume;
  } catch (const Error& e) {
    // The temporary path means nothing to the client: name the upload instead.
    std::string what = e.what();
    const auto at = what.find(path.string());
    if (at != std::string::npos) what.replace(at, path.string().size(), name);
    throw Error(what);
  }
}

std::string volume_bytes(const data::Volume& volume, const std::string& extension) {
  TempFolder folder;
  const auto path = folder.file("volume" + extension);
  imageio::write_volume(path.string(), volume);
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace msam::serve
