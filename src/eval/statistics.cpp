#include "msam/eval/statistics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "msam/common/error.h"

namespace msam::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kExactWilcoxonMaxN = 25;

// Continued fraction of I_x(a, b) (Numerical Recipes §6.4), evaluated with the modified Lentz
// method; converges fast for x < (a + 1) / (a + b + 2).
double incomplete_beta_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300, kEps = 1e-16;
  constexpr int kMaxTerms = 10000;
  auto guard = [](double v) { return std::fabs(v) < kTiny ? kTiny : v; };
  double c = 1.0;
  double d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
  double h = d;
  for (int m = 1; m <= kMaxTerms; ++m) {
    const double m2 = 2.0 * m;
    // even step: m(b − m)x / ((a + 2m − 1)(a + 2m))
    double coeff = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    d = 1.0 / guard(1.0 + coeff * d);
    c = guard(1.0 + coeff / c);
    h *= d * c;
    // odd step: −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1))
    coeff = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    d = 1.0 / guard(1.0 + coeff * d);
    c = guard(1.0 + coeff / c);
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1.0) < kEps) break;
  }
  return h;
}

double normal_two_sided_p(double z) { return std::erfc(std::fabs(z) / std::sqrt(2.0)); }

}  // namespace

double regularized_incomplete_beta(double a, double b, double x) {
  if (!(a > 0.0) || !(b > 0.0) || !(x >= 0.0 && x <= 1.0))
    throw Error("regularized_incomplete_beta: needs a, b > 0 and 0 <= x <= 1, got a=" +
                std::to_string(a) + " b=" + std::to_string(b) + " x=" + std::to_string(x));
  if (x == 0.0 || x == 1.0) return x;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                           a * std::log(x) + b * std::log1p(-x);
  const double front = std::exp(log_front);
  if (x < (a + 1.0) / (a + b + 2.0)) return front * incomplete_beta_fraction(a, b, x) / a;
  return 1.0 - front * incomplete_beta_fraction(b, a, 1.0 - x) / b;  // I_x(a,b) = 1 − I_{1−x}(b,a)
}

double student_t_two_sided_p(double t, double df) {
  if (std::isnan(t) || !(df > 0.0)) return kNaN;
  if (std::isinf(t)) return 0.0;
  return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
}

WilcoxonResult wilcoxon_signed_rank(const std::vector<double>& differences) {
  std::vector<double> d;
  for (double x : differences)
    if (x != 0.0) d.push_back(x);
  WilcoxonResult r;
  r.n = static_cast<int64_t>(d.size());
  if (r.n == 0) {
    r.p_value = kNaN;
    return r;
  }
  // Average ranks of |d|, and the tie groups for the variance correction.
  std::vector<size_t> order(d.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t i, size_t j) { return std::fabs(d[i]) < std::fabs(d[j]); });
  double r_plus = 0.0, r_minus = 0.0, tie_term = 0.0;
  bool ties = false;
  for (size_t lo = 0; lo < order.size();) {
    size_t hi = lo;
    while (hi + 1 < order.size() && std::fabs(d[order[hi + 1]]) == std::fabs(d[order[lo]])) ++hi;
    const double rank = (lo + hi) / 2.0 + 1.0;
    const double t = static_cast<double>(hi - lo + 1);
    if (t > 1) ties = true;
    tie_term += t * (t * t - 1.0);
    for (size_t k = lo; k <= hi; ++k) (d[order[k]] > 0 ? r_plus : r_minus) += rank;
    lo = hi + 1;
  }
  r.statistic = std::min(r_plus, r_minus);
  const double n = static_cast<double>(r.n);

  if (r.n <= kExactWilcoxonMaxN && !ties) {
    // Null distribution of W+: every sign pattern of ranks 1..n is equally likely.
    const int64_t max_sum = r.n * (r.n + 1) / 2;
    std::vector<double> count(max_sum + 1, 0.0);
    count[0] = 1.0;
    for (int64_t rank = 1; rank <= r.n; ++rank)
      for (int64_t s = max_sum; s >= rank; --s) count[s] += count[s - rank];
    double at_most = 0.0;
    for (int64_t s = 0; s <= static_cast<int64_t>(r.statistic); ++s) at_most += count[s];
    r.p_value = std::min(1.0, 2.0 * at_most / std::ldexp(1.0, static_cast<int>(r.n)));
    r.exact = true;
    return r;
  }
  const double mean = n * (n + 1.0) / 4.0;
  const double sd = std::sqrt((n * (n + 1.0) * (2.0 * n + 1.0) - 0.5 * tie_term) / 24.0);
  const double offset = r.statistic - mean;
  const double continuity = offset > 0 ? 0.5 : (offset < 0 ? -0.5 : 0.0);
  r.p_value = std::min(1.0, normal_two_sided_p((offset - continuity) / sd));
  return r;
}

PairedComparison compare_paired(const std::vector<double>& a, const std::vector<double>& b,
                                bool higher_is_better) {
  if (a.size() != b.size())
    throw Error("compare: the two result lists must pair the same cases, got " +
                std::to_string(a.size()) + " and " + std::to_string(b.size()) + " values");
  PairedComparison c;
  std::vector<double> diff;
  double sum_a = 0.0, sum_b = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      ++c.n_excluded;
      continue;
    }
    sum_a += a[i];
    sum_b += b[i];
    diff.push_back(a[i] - b[i]);
    if (a[i] == b[i])
      ++c.ties;
    else if ((a[i] > b[i]) == higher_is_better)
      ++c.wins;
    else
      ++c.losses;
  }
  c.n = static_cast<int64_t>(diff.size());
  if (c.n == 0) {
    c.mean_a = c.mean_b = c.mean_difference = c.t_statistic = c.t_p_value = kNaN;
    c.wilcoxon = wilcoxon_signed_rank(diff);
    return c;
  }
  const double n = static_cast<double>(c.n);
  c.mean_a = sum_a / n;
  c.mean_b = sum_b / n;
  c.mean_difference = std::accumulate(diff.begin(), diff.end(), 0.0) / n;
  if (c.n < 2) {
    c.t_statistic = c.t_p_value = kNaN;
  } else {
    double ss = 0.0;
    for (double x : diff) ss += (x - c.mean_difference) * (x - c.mean_difference);
    const double standard_error = std::sqrt(ss / (n - 1.0)) / std::sqrt(n);
    c.t_statistic = c.mean_difference / standard_error;  // ±inf or NaN when it is 0, as scipy
    c.t_p_value = student_t_two_sided_p(c.t_statistic, n - 1.0);
  }
  c.wilcoxon = wilcoxon_signed_rank(diff);
  return c;
}

}  // namespace msam::eval
