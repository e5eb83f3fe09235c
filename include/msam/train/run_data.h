// A run's setup, shared by train, prepare, eval and transfer: its preprocessing, its device,
// and its prepared data (the cache brought up to date, the split).
#pragma once
#include <torch/types.h>

#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/data/dataset.h"
#include "msam/data/split.h"
#include "msam/dist/process_group.h"
#include "msam/train/config.h"

namespace msam::train {

// The preprocessing the run's `data` section asks for (spacing, patch size, minimum lesion
// size, what to do about an image/label geometry mismatch).
data::PreprocessSettings preprocess_settings(const Config& config);

// The configured datasets as data::discover_cases takes them.
std::vector<data::DatasetSpec> dataset_specs(const Config& config);

// Every case of the configured datasets that has a cache entry, in case-id order.
struct PreparedCases {
  std::vector<std::string> ids, entries;  // entries: cache entry paths
  std::string cache_dir;
};

// Discovers the configured datasets and brings the preprocessed cache up to date (with
// `reader`, the ITK case reader; without one the cache must already be complete). Skipped
// and failed cases are logged as warnings with their reasons and left out. With a `group`,
// each rank prepares its share of the cases (every rank-th) and rank 0 writes the report.
PreparedCases prepare_cases(const Config& config, const data::CaseReader& reader,
                            dist::ProcessGroup* group = nullptr);

// Cache entries of each split. Built by `prepare_run_data`.
struct RunData {
  data::Split split;
  std::vector<std::string> train, val, test;  // cache entry paths
  std::string cache_dir, split_file;
};

// prepare_cases, then loads or creates the split over the cases that were prepared (at
// least three). With a `group`, rank 0 writes the split and every rank returns the same
// RunData.
RunData prepare_run_data(const Config& config, const data::CaseReader& reader,
                         dist::ProcessGroup* group = nullptr);

// `batch_size` is the global batch of a data-parallel run: it must divide among `ranks`, else
// an Error naming both.
void check_global_batch(const Config& config, int ranks);

// The run's device; for CUDA the GPU of this local rank.
torch::Device device_of(const Config& config, int local_rank = 0);

}  // namespace msam::train
