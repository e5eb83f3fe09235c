#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "msam/common/error.h"
#include "msam/eval/statistics.h"

using namespace msam;
using namespace msam::eval;

// Reference values from mpmath.betainc(a, b, 0, x, regularized=True) at 30 digits.
TEST(Statistics, IncompleteBetaMatchesMpmath) {
  EXPECT_NEAR(regularized_incomplete_beta(2.5, 0.5, 0.3), 0.0189271240719456516534522087067, 1e-14);
  EXPECT_NEAR(regularized_incomplete_beta(0.5, 0.5, 0.9), 0.795167235300866571910466459587, 1e-14);
  EXPECT_NEAR(regularized_incomplete_beta(10, 3, 0.7), 0.252815347854999893551627403454, 1e-14);
  EXPECT_NEAR(regularized_incomplete_beta(1.5, 20, 0.05), 0.443421201685690281692198957378, 1e-14);
  EXPECT_NEAR(regularized_incomplete_beta(50, 0.5, 0.98), 0.156243507866817925733293808152, 1e-13);
  EXPECT_EQ(regularized_incomplete_beta(3, 4, 0.0), 0.0);
  EXPECT_EQ(regularized_incomplete_beta(3, 4, 1.0), 1.0);
  EXPECT_THROW(regularized_incomplete_beta(-1, 4, 0.5), Error);
  EXPECT_THROW(regularized_incomplete_beta(1, 4, 1.5), Error);
}

TEST(Statistics, StudentTTwoSidedP) {
  // Closed forms: df 1 (Cauchy) p = 1 − (2/π)·atan|t|; df 2 p = 1 − |t|/sqrt(2 + t²).
  for (double t : {0.0, 0.3, 1.0, 2.7, 15.0}) {
    EXPECT_NEAR(student_t_two_sided_p(t, 1), 1.0 - 2.0 / M_PI * std::atan(t), 1e-13) << t;
    EXPECT_NEAR(student_t_two_sided_p(-t, 2), 1.0 - t / std::sqrt(2.0 + t * t), 1e-13) << t;
  }
  EXPECT_NEAR(student_t_two_sided_p(2.0, 5), 0.101939478829858369253018122591, 1e-13);
  EXPECT_NEAR(student_t_two_sided_p(4.5, 30), 0.0000951935939211245558119103502126, 1e-16);
  EXPECT_NEAR(student_t_two_sided_p(1.1, 2.5), 0.365869500334819565470882588861, 1e-13);
  EXPECT_EQ(student_t_two_sided_p(INFINITY, 4), 0.0);
  EXPECT_TRUE(std::isnan(student_t_two_sided_p(NAN, 4)));
}

TEST(Statistics, WilcoxonExactMatchesScipyAndR) {
  // scipy.stats.wilcoxon documentation example: statistic 24, p 0.041259765625.
  auto r = wilcoxon_signed_rank({6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75});
  EXPECT_TRUE(r.exact);
  EXPECT_EQ(r.n, 15);
  EXPECT_EQ(r.statistic, 24.0);
  EXPECT_DOUBLE_EQ(r.p_value, 0.041259765625);
  // R's wilcox.test(x, y, paired = TRUE) example: V = 40 (so min(W+, W−) = 5), p = 20/512.
  const std::vector<double> x{1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30};
  const std::vector<double> y{0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29};
  std::vector<double> d;
  for (size_t i = 0; i < x.size(); ++i) d.push_back(x[i] - y[i]);
  r = wilcoxon_signed_rank(d);
  EXPECT_TRUE(r.exact);
  EXPECT_EQ(r.statistic, 5.0);
  EXPECT_DOUBLE_EQ(r.p_value, 20.0 / 512.0);
  // All differences of one sign, n = 3: p = 2/8. Balanced ranks: p capped at 1.
  EXPECT_DOUBLE_EQ(wilcoxon_signed_rank({1, 2, 3}).p_value, 0.25);
  EXPECT_DOUBLE_EQ(wilcoxon_signed_rank({1, -2, 3, -4, -5, 6}).p_value, 1.0);
}

TEST(Statistics, WilcoxonNormalApproximation) {
  // Zeros dropped (n 14 → 12), tied |d| → approximation with tie and continuity corrections;
  // reference from the textbook formula (scipy wilcoxon(d, correction=True)).
  auto r = wilcoxon_signed_rank({1.5, -0.5, 2.0, 2.0, -1.0, 3.0, 0.0, 1.5, 4.0, -2.0, 2.5, 1.0,
                                 0.0, 3.5});
  EXPECT_FALSE(r.exact);
  EXPECT_EQ(r.n, 12);
  EXPECT_EQ(r.statistic, 10.5);
  EXPECT_NEAR(r.p_value, 0.02769448266618288, 1e-14);
  // n = 30 without ties: beyond the exact range.
  std::vector<double> d;
  for (int i = 0; i < 30; ++i) d.push_back((i + 1) * (i % 3 ? 1.0 : -1.0) * 0.1);
  r = wilcoxon_signed_rank(d);
  EXPECT_FALSE(r.exact);
  EXPECT_EQ(r.statistic, 145.0);
  EXPECT_NEAR(r.p_value, 0.07354309334531803, 1e-14);
  // Only zeros: nothing to test.
  r = wilcoxon_signed_rank({0.0, 0.0});
  EXPECT_EQ(r.n, 0);
  EXPECT_TRUE(std::isnan(r.p_value));
}

TEST(Statistics, PairedComparison) {
  const std::vector<double> a{0.81, 0.75, 0.92, 0.66, 0.88, 0.79, 0.70, 0.85, NAN};
  const std::vector<double> b{0.78, 0.77, 0.85, 0.60, 0.86, 0.71, 0.72, 0.80, 0.5};
  const auto c = compare_paired(a, b, /*higher_is_better=*/true);
  EXPECT_EQ(c.n, 8);
  EXPECT_EQ(c.n_excluded, 1);
  EXPECT_NEAR(c.mean_difference, 0.03375, 1e-12);
  // mpmath: t = mean(d) / (sd(d)/√n), p = I_{df/(df+t²)}(df/2, 1/2).
  EXPECT_NEAR(c.t_statistic, 2.47806259481610246136866147576, 1e-10);
  EXPECT_NEAR(c.t_p_value, 0.0423300580019848571550981705711, 1e-11);
  EXPECT_EQ(c.wins, 6);
  EXPECT_EQ(c.losses, 2);
  EXPECT_EQ(c.ties, 0);
  const auto lower = compare_paired(a, b, /*higher_is_better=*/false);
  EXPECT_EQ(lower.wins, 2);
  EXPECT_EQ(lower.losses, 6);

  const auto same = compare_paired({1, 2, 3}, {1, 2, 3}, true);
  EXPECT_EQ(same.ties, 3);
  EXPECT_TRUE(std::isnan(same.t_statistic));
  const auto shifted = compare_paired({2, 3, 4}, {1, 2, 3}, true);
  EXPECT_TRUE(std::isinf(shifted.t_statistic));
  EXPECT_EQ(shifted.t_p_value, 0.0);
  EXPECT_THROW(compare_paired({1, 2}, {1}, true), Error);
}
