// Timing of the data pipeline's two stages, for `msam bench` and the targets:
// raw case → cache entry (read + preprocess + write) and cached sample → batch.
#pragma once
#include <cstdint>
#include <string>

#include "msam/data/cache.h"

namespace msam::data {

struct PipelineTimings {
  double read_s = 0, preprocess_s = 0, write_s = 0;
  double raw_case_to_cache_s = 0;        // the sum of the three
  double cached_sample_to_batch_ms = 0;  // mean per sample over every timed batch
  int64_t samples = 0;                   // samples timed for the batch figure
};

// Prepares `raw_case` once into `work_dir` (timed), then loads `batches` batches of
// `batch_size` copies of its entry with random flips (timed). Throws msam::Error if the
// case cannot be prepared (including a skip: the benchmark needs a usable lesion).
PipelineTimings benchmark_pipeline(const CaseSource& raw_case, const CaseReader& reader,
                                   const PreprocessSettings& settings, const std::string& work_dir,
                                   int batches = 8, int64_t batch_size = 2);

}  // namespace msam::data
