// Scoring other tools' masks (nnU-Net, MONAI models, another annotator) on a run's split with
// the metrics, scopes and report of the model's evaluation, so that `msam compare` can set
// M-SAM and a baseline side by side (`msam eval --predictions DIR`).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/eval/evaluator.h"
#include "msam/eval/split_report.h"

namespace msam::eval {

// Reads a mask file (imageio::read_label in a build with ITK).
using MaskReader = std::function<data::Volume(const std::string& path)>;

// The files in `dir` that may hold the prediction of case `case_id` ("<dataset>/<case>"):
// <dataset>/<case> if any exists, else <case>, each with an extension imageio reads (.nii.gz,
// .nii, .nrrd, .nhdr, .mha, .mhd) or as a folder (a DICOM series). Only those that exist.
std::vector<std::string> prediction_files(const std::string& dir, const std::string& case_id);

// A prediction's foreground as uint8 0/1: a mask of only 0 and 1 as it is; a label map
// (other values) through the case's target labels, as its ground truth was. Throws
// msam::Error naming the file for values that are no labels (fractional, negative, NaN).
at::Tensor prediction_foreground(const data::Volume& prediction, const std::vector<int>& targets);

struct PredictionOptions {
  std::string dir;      // the predictions
  std::string out_dir;  // the report
  double nsd_tolerance_mm = 1.0;
  int overlays = 0;     // overlays/<case>.png for the first N cases scored
};

struct PredictionHooks {
  MaskReader read_mask;                // required
  OriginalLabelReader original_label;  // the original scope; empty: the crop only
};

// One case's prediction, found in options.dir, read, checked against the scan's shape and
// geometry (spacing, origin, direction within data::PreprocessSettings' default tolerance),
// and scored on the original grid and in the crop, taken there through the case's recorded
// preprocessing (data::patch_from_original). A missing, unusable or misaligned prediction
// gives a case not scored with the reason. `crop_mask` receives the crop mask when scored.
// Errors reading the case's own ground truth propagate.
CaseScores score_prediction(const data::CachedCase& c, const PredictionOptions& options,
                            const PredictionHooks& hooks, at::Tensor* crop_mask = nullptr);

// Every entry, written as a split report (the crop and original scopes, then status and
// message) into options.out_dir. Throws msam::Error naming the folder when it does not exist
// or when no case could be scored (after writing the report, which says why for each).
SplitScores score_predictions(const std::vector<std::string>& entries,
                              const PredictionOptions& options, const PredictionHooks& hooks);

}  // namespace msam::eval
