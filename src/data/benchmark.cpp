#include "msam/data/benchmark.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "msam/data/loader.h"

namespace msam::data {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

PipelineTimings benchmark_pipeline(const CaseSource& raw_case, const CaseReader& reader,
                                   const PreprocessSettings& settings, const std::string& work_dir, int batches,
                                   int64_t batch_size) {
  std::filesystem::create_directories(work_dir);
  PipelineTimings t;
  auto t0 = std::chrono::steady_clock::now();
  auto [image, label] = reader(raw_case);
  t.read_s = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  const auto prepared = preprocess_case(image, label, raw_case, settings);
  t.preprocess_s = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  const auto path = cache_entry_path(work_dir, raw_case.id);
  CacheEntryInfo info{raw_case.id, stamp_file(raw_case.image), stamp_file(raw_case.label),
                      settings_hash(settings, raw_case), raw_case.targets, raw_case.modality,
                      prepared.label_voxels, prepared.record};
  write_cache_entry(path, prepared, info);
  t.write_s = seconds_since(t0);
  t.raw_case_to_cache_s = t.read_s + t.preprocess_s + t.write_s;

  const std::vector<std::string> entries(static_cast<size_t>(batch_size), path);
  t0 = std::chrono::steady_clock::now();
  for (int b = 0; b < batches; ++b) {
    AugmentOptions flips_only;
    flips_only.random_flips = true;
    std::vector<Augmentation> augmentations;
    for (int64_t i = 0; i < batch_size; ++i)
      augmentations.push_back(sample_augmentation(flips_only, 0, 0, static_cast<size_t>(b * batch_size + i)));
    load_batch(entries, augmentations);
    t.samples += batch_size;
  }
  t.cached_sample_to_batch_ms = seconds_since(t0) * 1000.0 / static_cast<double>(std::max<int64_t>(1, t.samples));
  return t;
}

}  // namespace msam::data
