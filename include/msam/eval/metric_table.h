// The per-case metrics by name, with the direction that makes a value better: the one table
// that per_case.csv, the summaries, `msam compare` and `msam transfer` read.
#pragma once
#include <string>
#include <vector>

#include "msam/eval/metrics.h"

namespace msam::eval {

enum class Direction { kHigherIsBetter, kLowerIsBetter };

struct MetricInfo {
  const char* name;         // column name in the crop scope
  Direction direction;
  const char* unit;         // "" for ratios
  const char* description;
  double CaseMetrics::*value;
};

// dice, iou, hd, hd95, assd, nsd: the order of every table and summary.
const std::vector<MetricInfo>& metric_table();

// Where a case is scored. A metric's column is the scope's prefix + its name.
struct Scope {
  const char* name;    // in summary.csv / summary.json
  const char* prefix;  // of per_case.csv columns
};
constexpr Scope kCropScope{"crop", ""};            // the model's 128³ input (the paper's)
constexpr Scope kOriginalScope{"original", "orig_"};  // the scan's grid, after paste-back

// The metric a per_case.csv column holds: <name>, orig_<name>, or dice_click<k> (Dice after
// click k); nullptr for other columns (case, seconds, status, message).
const MetricInfo* metric_of_column(const std::string& column);

// Whether a larger value of this column is better (a metric's, or `seconds`: lower); throws
// msam::Error for any other column.
bool higher_is_better(const std::string& column);

// The quality lost going from `before` to `after`: positive when `after` is worse.
double quality_drop(const MetricInfo& metric, double before, double after);

}  // namespace msam::eval
