// Paired comparison of two methods evaluated on the same cases (`msam compare`).
#pragma once
#include <cstdint>
#include <vector>

namespace msam::eval {

// Regularized incomplete beta function I_x(a, b) (a, b > 0, 0 ≤ x ≤ 1).
double regularized_incomplete_beta(double a, double b, double x);

// Two-sided p-value of Student's t statistic with `df` degrees of freedom.
double student_t_two_sided_p(double t, double df);

struct WilcoxonResult {
  int64_t n = 0;            // nonzero differences used
  double statistic = 0;     // min(W+, W−), as scipy reports for the two-sided test
  double p_value = 0;       // two-sided
  bool exact = false;       // exact null distribution (n ≤ 25, no ties) or normal approximation
};

// Wilcoxon signed-rank test on paired differences. Zero differences are dropped first
// (scipy's default zero_method='wilcox'); ranks of tied |d| are averaged. Exact for n ≤ 25
// without ties; otherwise the normal approximation with the tie correction of the variance
// and a continuity correction of 0.5 (scipy's correction=True, R's default; scipy's own default
// is correction=False). No nonzero difference: statistic 0, p-value NaN.
WilcoxonResult wilcoxon_signed_rank(const std::vector<double>& differences);

struct PairedComparison {
  int64_t n = 0;            // pairs where both values are finite; only these are compared
  int64_t n_excluded = 0;   // pairs with a NaN or infinite value (reported, not compared)
  double mean_a = 0, mean_b = 0;
  double mean_difference = 0;  // mean of a − b
  double t_statistic = 0, t_p_value = 0;  // paired t-test (scipy.stats.ttest_rel), two-sided
  WilcoxonResult wilcoxon;                // on a − b
  int64_t wins = 0, losses = 0, ties = 0;  // cases where a is better / worse / equal
};

// Compares method a with method b case by case. `higher_is_better` says which direction is
// a win (true for Dice, false for distances). With fewer than two pairs the t-test values are
// NaN; when all differences are equal the t statistic is ±inf (p 0) or NaN (all zero), as in
// scipy.
PairedComparison compare_paired(const std::vector<double>& a, const std::vector<double>& b,
                                bool higher_is_better);

}  // namespace msam::eval
