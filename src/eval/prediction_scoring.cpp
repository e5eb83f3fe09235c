#include "msam/eval/prediction_scoring.h"

#include <filesystem>

#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/common/shape.h"
#include "msam/data/preprocess.h"
#include "msam/io/csv.h"

namespace fs = std::filesystem;

namespace msam::eval {
namespace {

const char* const kExtensions[] = {".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"};

std::vector<std::string> existing(const fs::path& stem) {
  std::vector<std::string> out;
  for (const char* ext : kExtensions) {
    const fs::path p = stem.string() + ext;
    if (fs::is_regular_file(p)) out.push_back(p.string());
  }
  if (fs::is_directory(stem)) out.push_back(stem.string());
  return out;
}

CaseScores not_scored(const std::string& case_id, CaseStatus status, const std::string& why) {
  CaseScores s;
  s.case_id = case_id;
  s.status = status;
  s.message = why;
  return s;
}

}  // namespace

std::vector<std::string> prediction_files(const std::string& dir, const std::string& case_id) {
  const auto slash = case_id.find('/');
  const std::string name = slash == std::string::npos ? case_id : case_id.substr(slash + 1);
  if (slash != std::string::npos) {
    auto in_dataset = existing(fs::path(dir) / case_id.substr(0, slash) / name);
    if (!in_dataset.empty()) return in_dataset;
  }
  return existing(fs::path(dir) / name);
}

at::Tensor prediction_foreground(const data::Volume& prediction,
                                 const std::vector<int>& targets) {
  const bool binary = ((prediction.data == 0) | (prediction.data == 1)).all().item<bool>();
  return data::binarise_label(prediction, binary ? std::vector<int>{} : targets);
}

CaseScores score_prediction(const data::CachedCase& c, const PredictionOptions& o,
                            const PredictionHooks& hooks, at::Tensor* crop_mask) {
  const auto& id = c.info.case_id;
  const auto files = prediction_files(o.dir, id);
  if (files.empty())
    return not_scored(id, CaseStatus::kMissing, "no prediction in " + o.dir);
  if (files.size() > 1)
    return not_scored(id, CaseStatus::kInvalid,
                      "more than one prediction: " + files[0] + " and " + files[1]);
  const auto& file = files.front();
  data::Volume prediction;
  at::Tensor foreground;
  try {
    prediction = hooks.read_mask(file);
    foreground = prediction_foreground(prediction, c.info.targets);
  } catch (const Error& e) {
    return not_scored(id, CaseStatus::kInvalid, e.what());
  }
  const auto& scan = c.info.record.orientation;
  const data::Index3 shape{prediction.data.size(0), prediction.data.size(1),
                           prediction.data.size(2)};
  if (shape != scan.input_shape)
    return not_scored(id, CaseStatus::kMisaligned,
                      file + ": shape " + shape_str(shape) + " differs from the scan's " +
                          shape_str(scan.input_shape));
  const auto diff = data::geometry_difference(scan.input_geometry, prediction.geometry,
                                              data::PreprocessSettings{}.geometry_tolerance);
  if (!diff.empty())
    return not_scored(id, CaseStatus::kMisaligned,
                      file + ": geometry differs from the scan's: " + diff);

  CaseScores s;
  s.case_id = id;
  MetricOptions mo;
  mo.nsd_tolerance_mm = o.nsd_tolerance_mm;
  const auto& ps = c.info.record.patch_geometry.spacing;
  mo.spacing = {ps[0], ps[1], ps[2]};
  const auto crop = data::patch_from_original(foreground, c.info.record);
  s.crop = compute_case_metrics(crop, c.label, mo);
  if (hooks.original_label) {
    const auto gt = hooks.original_label(c.info);
    const auto& os = gt.geometry.spacing;
    mo.spacing = {os[0], os[1], os[2]};
    s.original = compute_case_metrics(foreground, gt.data, mo);
  }
  if (crop_mask) *crop_mask = crop;
  return s;
}

SplitScores score_predictions(const std::vector<std::string>& entries,
                              const PredictionOptions& o, const PredictionHooks& hooks) {
  if (!fs::is_directory(o.dir)) throw file_error(o.dir, "no such folder of predictions");
  if (!hooks.read_mask) throw Error("scoring predictions needs a build with ITK (image IO)");
  if (entries.empty()) throw Error("evaluation: the chosen split has no cases");
  SplitScores out;
  out.columns.original = static_cast<bool>(hooks.original_label);
  out.columns.status = true;
  int overlays = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto c = data::read_cache_entry(entries[i]);
    at::Tensor crop;
    auto s = score_prediction(c, o, hooks, &crop);
    const std::string at = "[" + std::to_string(i + 1) + "/" + std::to_string(entries.size()) +
                           "] " + s.case_id + "  ";
    if (s.status == CaseStatus::kScored) {
      if (overlays++ < o.overlays) write_case_overlay(o.out_dir, c, crop, {});
      spdlog::info(at + "Dice " + io::format_number(s.crop.dice) +
                   (s.original ? "  original Dice " + io::format_number(s.original->dice) : ""));
    } else {
      spdlog::warn(at + "not scored (" + name(s.status) + "): " + s.message);
    }
    out.cases.push_back(std::move(s));
  }
  write_split_report(o.out_dir, out,
                     {{"predictions", o.dir}, {"nsd_tolerance_mm", o.nsd_tolerance_mm}});
  size_t n_scored = 0;
  for (const auto& s : out.cases) n_scored += s.status == CaseStatus::kScored;
  if (n_scored == 0)
    throw file_error(o.dir, "no case of the split could be scored (see " +
                                (fs::path(o.out_dir) / "per_case.csv").string() + ")");
  return out;
}

}  // namespace msam::eval
