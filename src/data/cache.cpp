#include "msam/data/cache.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace msam::data {

namespace {

// Bump when a code change alters what preprocess_case produces, so old caches are rebuilt.
constexpr const char* kPipelineVersion = "msam-prepare-3";  // 2: MR z-scored over voxels ≠ 0; 3: less its background value
constexpr const char* kMetadataKey = "msam.case";

json geometry_json(const Geometry& g) {
  return {{"spacing", g.spacing}, {"origin", g.origin}, {"direction", g.direction}};
}
Geometry geometry_from(const json& j) {
  Geometry g;
  g.spacing = j.at("spacing").get<std::array<double, 3>>();
  g.origin = j.at("origin").get<std::array<double, 3>>();
  g.direction = j.at("direction").get<std::array<double, 9>>();
  return g;
}

json record_json(const PreprocessRecord& r) {
  return {{"orientation",
           {{"permutation", r.orientation.permutation},
            {"flipped", r.orientation.flipped},
            {"input_shape", r.orientation.input_shape},
            {"input_geometry", geometry_json(r.orientation.input_geometry)}}},
          {"resampled", r.resampled},
          {"ras_shape", r.ras_shape},
          {"ras_geometry", geometry_json(r.ras_geometry)},
          {"grid_geometry", geometry_json(r.grid_geometry)},
          {"crop", {{"start", r.crop.start}, {"size", r.crop.size}, {"full_shape", r.crop.full_shape}}},
          {"patch_geometry", geometry_json(r.patch_geometry)}};
}
PreprocessRecord record_from(const json& j) {
  PreprocessRecord r;
  const auto& o = j.at("orientation");
  r.orientation.permutation = o.at("permutation").get<std::array<int, 3>>();
  r.orientation.flipped = o.at("flipped").get<std::array<bool, 3>>();
  r.orientation.input_shape = o.at("input_shape").get<Index3>();
  r.orientation.input_geometry = geometry_from(o.at("input_geometry"));
  r.resampled = j.at("resampled").get<bool>();
  r.ras_shape = j.at("ras_shape").get<Index3>();
  r.ras_geometry = geometry_from(j.at("ras_geometry"));
  r.grid_geometry = geometry_from(j.at("grid_geometry"));
  r.crop.start = j.at("crop").at("start").get<Index3>();
  r.crop.size = j.at("crop").at("size").get<Index3>();
  r.crop.full_shape = j.at("crop").at("full_shape").get<Index3>();
  r.patch_geometry = geometry_from(j.at("patch_geometry"));
  return r;
}

json stamp_json(const SourceStamp& s) { return {{"path", s.path}, {"size", s.size}, {"mtime_ns", s.mtime_ns}}; }
SourceStamp stamp_from(const json& j) {
  return {j.at("path").get<std::string>(), j.at("size").get<uint64_t>(), j.at("mtime_ns").get<int64_t>()};
}

json info_json(const CacheEntryInfo& i) {
  return {{"case_id", i.case_id},
          {"image", stamp_json(i.image)},
          {"label", stamp_json(i.label)},
          {"settings_hash", i.settings_hash},
          {"targets", i.targets},
          {"modality", modality_name(i.modality)},
          {"label_voxels", i.label_voxels},
          {"record", record_json(i.record)}};
}

// The entry's record from its file's metadata.
CacheEntryInfo info_from(const std::map<std::string, std::string>& metadata, const std::string& path) {
  const auto text = metadata.find(kMetadataKey);
  if (text == metadata.end()) throw file_error(path, "not an msam cache entry (no msam.case metadata)");
  try {
    const auto j = json::parse(text->second);
    CacheEntryInfo i;
    i.case_id = j.at("case_id").get<std::string>();
    i.image = stamp_from(j.at("image"));
    i.label = stamp_from(j.at("label"));
    i.settings_hash = j.at("settings_hash").get<std::string>();
    i.targets = j.at("targets").get<std::vector<int>>();
    i.modality = parse_modality(j.at("modality").get<std::string>());
    i.label_voxels = j.at("label_voxels").get<int64_t>();
    i.record = record_from(j.at("record"));
    return i;
  } catch (const json::exception& e) {
    throw file_error(path, std::string("cache metadata is malformed: ") + e.what());
  }
}

std::string fnv1a_hex(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

SourceStamp stamp_file(const std::string& path) {
  std::error_code ec;
  const auto mtime_ns = [&](const fs::path& p) {
    const auto t = fs::last_write_time(p, ec);
    if (ec) throw file_error(p.string(), "cannot stat: " + ec.message());
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  const auto size = [&](const fs::path& p) {
    const auto n = fs::file_size(p, ec);
    if (ec) throw file_error(p.string(), "cannot stat: " + ec.message());
    return static_cast<uint64_t>(n);
  };
  SourceStamp s{path, 0, mtime_ns(path)};
  if (!fs::is_directory(path, ec)) {
    s.size = size(path);
    return s;
  }
  // A DICOM series folder: its files' total size and the newest mtime of the folder (changed
  // by adding, removing or renaming a slice) and its files (changed by rewriting one).
  try {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (!entry.is_regular_file()) continue;
      s.size += size(entry.path());
      s.mtime_ns = std::max(s.mtime_ns, mtime_ns(entry.path()));
    }
  } catch (const fs::filesystem_error& e) {
    throw file_error(path, std::string("cannot list: ") + e.what());
  }
  return s;
}

bool operator==(const SourceStamp& a, const SourceStamp& b) {
  return a.path == b.path && a.size == b.size && a.mtime_ns == b.mtime_ns;
}

std::string settings_hash(const PreprocessSettings& settings, const CaseSource& source) {
  json j{{"pipeline", kPipelineVersion},
         {"settings", json::parse(settings_json(settings))},
         {"targets", source.targets},
         {"modality", modality_name(source.modality)}};
  // Only when set, so that single-channel scans keep the entries they had.
  if (source.channel) j["channel"] = *source.channel;
  return fnv1a_hex(j.dump());
}

std::string cache_entry_path(const std::string& cache_dir, const std::string& case_id) {
  std::string name;
  for (size_t i = 0; i < case_id.size(); ++i) name += case_id[i] == '/' ? std::string("__") : std::string(1, case_id[i]);
  return (fs::path(cache_dir) / (name + ".safetensors")).string();
}

void write_cache_entry(const std::string& path, const PreparedCase& prepared, const CacheEntryInfo& info) {
  io::write_safetensors(path, {{"image", prepared.image.to(at::kHalf)}, {"label", prepared.label.to(at::kByte)}},
                        {{kMetadataKey, info_json(info).dump()}});
}

CachedCase read_cache_entry(const std::string& path) {
  const auto file = io::read_safetensors(path);
  CachedCase c;
  c.info = info_from(file.metadata, path);
  c.image = file.at("image").to(at::kFloat);
  c.label = file.at("label");
  if (c.label.scalar_type() != at::kByte || !c.image.sizes().equals(c.label.sizes()) || c.image.dim() != 3)
    throw file_error(path, "cache entry tensors are not a 3-D F16 image and a U8 label of one shape");
  return c;
}

CacheEntryInfo read_cache_info(const std::string& path) {
  return info_from(io::read_safetensors_metadata(path), path);
}

bool cache_entry_is_current(const std::string& path, const CaseSource& source, const std::string& hash) {
  if (!fs::is_regular_file(path)) return false;
  try {
    const auto info = read_cache_info(path);
    return info.case_id == source.id && info.settings_hash == hash && info.image == stamp_file(source.image) &&
           info.label == stamp_file(source.label);
  } catch (const Error&) {
    return false;
  }
}

std::string status_name(CaseOutcome::Status s) {
  switch (s) {
    case CaseOutcome::Status::Prepared: return "prepared";
    case CaseOutcome::Status::Reused: return "reused";
    case CaseOutcome::Status::Skipped: return "skipped";
    case CaseOutcome::Status::Failed: break;
  }
  return "failed";
}

size_t PrepareReport::count(CaseOutcome::Status s) const {
  size_t n = 0;
  for (const auto& c : cases) n += c.status == s;
  return n;
}

std::string PrepareReport::summary() const {
  using S = CaseOutcome::Status;
  return std::to_string(count(S::Prepared)) + " prepared, " + std::to_string(count(S::Reused)) + " reused, " +
         std::to_string(count(S::Skipped)) + " skipped, " + std::to_string(count(S::Failed)) + " failed";
}

PrepareReport prepare_cache(const std::vector<CaseSource>& cases, const PreprocessSettings& settings,
                            const std::string& cache_dir, const CaseReader& reader,
                            const std::function<void(const CaseOutcome&)>& on_case,
                            bool write_report) {
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec) throw file_error(cache_dir, "cannot create cache folder: " + ec.message());
  PrepareReport report;
  for (const auto& source : cases) {
    CaseOutcome out;
    out.case_id = source.id;
    const auto path = cache_entry_path(cache_dir, source.id);
    const auto hash = settings_hash(settings, source);
    try {
      if (cache_entry_is_current(path, source, hash)) {
        out.status = CaseOutcome::Status::Reused;
      } else {
        // Stamped before reading, so a file changed while it is being read is redone next time.
        CacheEntryInfo info{source.id, stamp_file(source.image), stamp_file(source.label), hash,
                            source.targets, source.modality, 0, {}};
        auto [image, label] = reader(source);
        const auto prepared = preprocess_case(image, label, source, settings);
        info.label_voxels = prepared.label_voxels;
        info.record = prepared.record;
        write_cache_entry(path, prepared, info);
        out.status = CaseOutcome::Status::Prepared;
      }
      out.entry = path;
    } catch (const CaseSkipped& e) {
      out.status = CaseOutcome::Status::Skipped;
      out.message = e.what();
    } catch (const Error& e) {
      out.message = e.what();
    } catch (const c10::Error& e) {
      out.message = source.image + ": " + e.what_without_backtrace();
    } catch (const std::exception& e) {
      out.message = source.image + ": " + e.what();
    }
    // An entry left from earlier settings must not be trained on when the case now fails.
    if (out.entry.empty()) fs::remove(path, ec);
    if (on_case) on_case(out);
    report.cases.push_back(std::move(out));
  }
  if (write_report) write_prepare_report(cache_dir, report);
  return report;
}

std::string to_json_text(const PrepareReport& report) {
  json j = json::array();
  for (const auto& c : report.cases)
    j.push_back({{"case_id", c.case_id}, {"status", status_name(c.status)}, {"message", c.message}, {"entry", c.entry}});
  return json{{"summary", report.summary()}, {"cases", j}}.dump(2) + "\n";
}

PrepareReport prepare_report_from_json(const std::string& text) {
  PrepareReport report;
  const auto parsed = json::parse(text);
  for (const auto& c : parsed.at("cases")) {
    CaseOutcome o;
    o.case_id = c.at("case_id").get<std::string>();
    const auto status = c.at("status").get<std::string>();
    for (auto s : {CaseOutcome::Status::Prepared, CaseOutcome::Status::Reused,
                   CaseOutcome::Status::Skipped, CaseOutcome::Status::Failed})
      if (status_name(s) == status) o.status = s;
    o.message = c.at("message").get<std::string>();
    o.entry = c.at("entry").get<std::string>();
    report.cases.push_back(std::move(o));
  }
  return report;
}

void write_prepare_report(const std::string& cache_dir, const PrepareReport& report) {
  io::write_file_atomically((fs::path(cache_dir) / "prepare_report.json").string(),
                            to_json_text(report));
}

std::vector<std::string> cached_entries(const std::string& cache_dir, const std::vector<std::string>& case_ids,
                                        std::vector<std::string>* missing) {
  std::vector<std::string> entries;
  for (const auto& id : case_ids) {
    const auto path = cache_entry_path(cache_dir, id);
    if (fs::is_regular_file(path))
      entries.push_back(path);
    else if (missing)
      missing->push_back(id);
  }
  return entries;
}

}  // namespace msam::data
