// A model and synthetic data small enough to train a few steps in seconds: what the trainer's
// and the data-parallel tests train on.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "msam/data/cache.h"
#include "msam/model/msam.h"

namespace msam::test {

// 32³ input in 8³ patches, width 32, one encoder block (global attention), prompt width 48,
// LoRA rank 2, dense PE aligned with the clicks (from scratch).
model::MSAMConfig micro_model_config();

// The (image, label) paths of `cases` synthetic cases under `dir`: case_<i>.nii.gz and
// case_<i>_label.nii.gz. Names only.
std::vector<std::pair<std::string, std::string>> synthetic_source_pairs(const std::string& dir,
                                                                        int cases);

// Writes those paths as stand-in files (no image IO reads them) and returns the reader that
// gives each its volumes: data::make_synthetic_case(seed, i, 1).
data::CaseReader write_synthetic_sources(const std::string& dir, int cases, uint64_t seed);

}  // namespace msam::test
