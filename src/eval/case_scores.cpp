#include "msam/eval/case_scores.h"

#include <cmath>

namespace msam::eval {

namespace {

// Finite doubles as numbers (nlohmann prints 17 significant digits: exact round trip);
// non-finite ones, which JSON has no number for, as "nan", "inf", "-inf".
nlohmann::json number(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

double number(const nlohmann::json& j) {
  if (j.is_number()) return j.get<double>();
  const auto s = j.get<std::string>();
  if (s == "nan") return NAN;
  return s == "inf" ? INFINITY : -INFINITY;
}

nlohmann::json to_json(const CaseMetrics& m) {
  return {number(m.dice), number(m.iou), number(m.hd), number(m.hd95), number(m.assd),
          number(m.nsd), number(m.hd_pred_to_gt), number(m.hd_gt_to_pred),
          number(m.hd95_pred_to_gt), number(m.hd95_gt_to_pred), m.pred_voxels, m.gt_voxels,
          m.pred_surface_voxels, m.gt_surface_voxels};
}

CaseMetrics metrics_from_json(const nlohmann::json& j) {
  CaseMetrics m;
  double* d[] = {&m.dice, &m.iou, &m.hd, &m.hd95, &m.assd, &m.nsd, &m.hd_pred_to_gt,
                 &m.hd_gt_to_pred, &m.hd95_pred_to_gt, &m.hd95_gt_to_pred};
  for (size_t k = 0; k < 10; ++k) *d[k] = number(j.at(k));
  m.pred_voxels = j.at(10).get<int64_t>();
  m.gt_voxels = j.at(11).get<int64_t>();
  m.pred_surface_voxels = j.at(12).get<int64_t>();
  m.gt_surface_voxels = j.at(13).get<int64_t>();
  return m;
}

}  // namespace

nlohmann::json to_json(const CaseScores& s) {
  nlohmann::json dice = nlohmann::json::array();
  for (double v : s.dice_per_click) dice.push_back(number(v));
  nlohmann::json j = {{"case_id", s.case_id},
                      {"status", static_cast<int>(s.status)},
                      {"message", s.message},
                      {"dice_per_click", dice},
                      {"crop", to_json(s.crop)},
                      {"seconds", number(s.seconds)}};
  if (s.original) j["original"] = to_json(*s.original);
  return j;
}

CaseScores case_scores_from_json(const nlohmann::json& j) {
  CaseScores s;
  s.case_id = j.at("case_id").get<std::string>();
  s.status = static_cast<CaseStatus>(j.at("status").get<int>());
  s.message = j.at("message").get<std::string>();
  for (const auto& v : j.at("dice_per_click")) s.dice_per_click.push_back(number(v));
  s.crop = metrics_from_json(j.at("crop"));
  if (j.contains("original")) s.original = metrics_from_json(j.at("original"));
  s.seconds = number(j.at("seconds"));
  return s;
}

}  // namespace msam::eval
