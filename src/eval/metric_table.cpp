#include "msam/eval/metric_table.h"

#include <cctype>

#include "msam/common/error.h"

namespace msam::eval {

const std::vector<MetricInfo>& metric_table() {
  static const std::vector<MetricInfo> table{
      {"dice", Direction::kHigherIsBetter, "", "Dice coefficient 2|P∩G|/(|P|+|G|)",
       &CaseMetrics::dice},
      {"iou", Direction::kHigherIsBetter, "", "intersection over union |P∩G|/|P∪G|",
       &CaseMetrics::iou},
      {"hd", Direction::kLowerIsBetter, "mm", "Hausdorff distance (maximum) between surfaces",
       &CaseMetrics::hd},
      {"hd95", Direction::kLowerIsBetter, "mm", "95th-percentile Hausdorff distance",
       &CaseMetrics::hd95},
      {"assd", Direction::kLowerIsBetter, "mm", "average symmetric surface distance",
       &CaseMetrics::assd},
      {"nsd", Direction::kHigherIsBetter, "",
       "normalised surface Dice: share of surface within the tolerance", &CaseMetrics::nsd},
  };
  return table;
}

namespace {

const MetricInfo* by_name(const std::string& name) {
  for (const auto& m : metric_table())
    if (name == m.name) return &m;
  return nullptr;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

const MetricInfo* metric_of_column(const std::string& column) {
  const std::string click = "dice_click";
  if (starts_with(column, click) && column.size() > click.size()) {
    for (size_t i = click.size(); i < column.size(); ++i)
      if (!std::isdigit(static_cast<unsigned char>(column[i]))) return nullptr;
    return by_name("dice");
  }
  if (starts_with(column, kOriginalScope.prefix))
    return by_name(column.substr(std::string(kOriginalScope.prefix).size()));
  return by_name(column);
}

bool higher_is_better(const std::string& column) {
  // The time a case took is no quality metric, but two evaluations compare on it (a model
  // against a faster baseline): lower is better.
  if (column == "seconds") return false;
  const auto* m = metric_of_column(column);
  if (!m) throw Error("'" + column + "' is not a metric (known: dice, iou, hd, hd95, assd, nsd, "
                      "their orig_ forms, dice_click<k> and seconds)");
  return m->direction == Direction::kHigherIsBetter;
}

double quality_drop(const MetricInfo& metric, double before, double after) {
  return metric.direction == Direction::kHigherIsBetter ? before - after : after - before;
}

}  // namespace msam::eval
