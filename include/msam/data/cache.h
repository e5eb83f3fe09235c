// Preprocessed cache: the deterministic preprocessing runs once per case (`msam prepare`) and
// each case is stored as one safetensors file: "image" F16 and "label" U8, both patch-sized,
// plus a "msam.case" metadata JSON (source files with size and mtime, settings hash,
// geometry and the full PreprocessRecord). Reading it needs no ITK, so training can run
// from a cache carried to a machine without ITK.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "msam/data/dataset.h"
#include "msam/data/preprocess.h"
#include "msam/data/volume.h"

namespace msam::data {

struct SourceStamp {
  std::string path;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
// A file's size and mtime; for a DICOM series folder, its files' total size and the newest
// mtime of the folder and its files. Throws msam::Error if missing.
SourceStamp stamp_file(const std::string& path);
bool operator==(const SourceStamp& a, const SourceStamp& b);

struct CacheEntryInfo {
  std::string case_id;
  SourceStamp image, label;
  std::string settings_hash;
  std::vector<int> targets;
  Modality modality = Modality::Other;
  int64_t label_voxels = 0;
  PreprocessRecord record;
};

struct CachedCase {
  at::Tensor image;  // float32, patch-sized
  at::Tensor label;  // uint8 {0, 1}
  CacheEntryInfo info;
};

// Hash of everything that changes a case's preprocessed output: the settings, the case's
// targets and modality, and a pipeline version bumped whenever the pipeline's code changes
// its output.
std::string settings_hash(const PreprocessSettings& settings, const CaseSource& source);

// <cache_dir>/<case id with '/' → "__">.safetensors
std::string cache_entry_path(const std::string& cache_dir, const std::string& case_id);

void write_cache_entry(const std::string& path, const PreparedCase& prepared, const CacheEntryInfo& info);
CachedCase read_cache_entry(const std::string& path);
// Only the metadata (reads the safetensors header, not the tensors).
CacheEntryInfo read_cache_info(const std::string& path);

// True when `path` holds an entry for `source` made with `hash` from source files whose size
// and mtime are unchanged. A missing or unreadable entry is simply not current.
bool cache_entry_is_current(const std::string& path, const CaseSource& source, const std::string& hash);

// Reads one case's image and label from disk (the ITK reader lives in msam_imageio).
using CaseReader = std::function<std::pair<Volume, Volume>(const CaseSource&)>;

struct CaseOutcome {
  enum class Status { Prepared, Reused, Skipped, Failed };
  std::string case_id;
  Status status = Status::Failed;
  std::string message;  // the reason for Skipped / Failed
  std::string entry;    // cache file (Prepared / Reused)
};
std::string status_name(CaseOutcome::Status s);

struct PrepareReport {
  std::vector<CaseOutcome> cases;
  size_t count(CaseOutcome::Status s) const;
  std::string summary() const;  // "N prepared, N reused, N skipped, N failed"
};

// Brings `cache_dir` up to date for `cases`: current entries are reused, others are read,
// preprocessed and written. A case that fails (bad file, mismatch, ...) or is skipped (small
// lesion) is recorded with its reason and the rest continue. `on_case` is told about every
// outcome as it happens (for logging). The report is also written to
// <cache_dir>/prepare_report.json (unless `write_report` is false: ranks that each prepare a
// share of the cases merge their reports and one writes it), so no skip is ever silent.
PrepareReport prepare_cache(const std::vector<CaseSource>& cases, const PreprocessSettings& settings,
                            const std::string& cache_dir, const CaseReader& reader,
                            const std::function<void(const CaseOutcome&)>& on_case = {},
                            bool write_report = true);

// <cache_dir>/prepare_report.json, and the report back from its JSON text.
void write_prepare_report(const std::string& cache_dir, const PrepareReport& report);
std::string to_json_text(const PrepareReport& report);
PrepareReport prepare_report_from_json(const std::string& text);

// Entries of `case_ids` present in `cache_dir`; ids without an entry (skipped or failed at
// prepare time) are appended to `missing` when given.
std::vector<std::string> cached_entries(const std::string& cache_dir, const std::vector<std::string>& case_ids,
                                        std::vector<std::string>* missing = nullptr);

}  // namespace msam::data
