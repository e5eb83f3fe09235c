// msam compare A/per_case.csv B/per_case.csv: paired comparison over the shared cases.
#include <cmath>
#include <cstdio>
#include <map>

#include "command.h"
#include "msam/common/error.h"
#include "msam/eval/report.h"
#include "msam/eval/statistics.h"

namespace msam::cli {
namespace {

struct Options {
  std::string a, b;
  std::vector<std::string> metrics{"dice", "iou", "hd", "hd95", "assd", "nsd"};
};

double parse_value(const std::string& s, const std::string& source) {
  if (s == "nan") return NAN;
  if (s == "inf") return INFINITY;
  if (s == "-inf") return -INFINITY;
  try {
    return std::stod(s);
  } catch (const std::exception&) {
    throw Error(source + ": '" + s + "' is not a number");
  }
}

int run(const Options& o) {
  auto ta = eval::read_csv(o.a), tb = eval::read_csv(o.b);
  const size_t ca = ta.column("case"), cb = tb.column("case");
  std::map<std::string, size_t> rows_b;
  for (size_t i = 0; i < tb.rows.size(); ++i) rows_b[tb.rows[i][cb]] = i;
  std::vector<std::pair<size_t, size_t>> pairs;
  for (size_t i = 0; i < ta.rows.size(); ++i) {
    auto it = rows_b.find(ta.rows[i][ca]);
    if (it != rows_b.end()) pairs.emplace_back(i, it->second);
  }
  if (pairs.empty()) throw Error(o.a + " and " + o.b + " share no case");
  std::printf("A = %s\nB = %s\n%zu shared cases (%zu only in A, %zu only in B)\n\n", o.a.c_str(),
              o.b.c_str(), pairs.size(), ta.rows.size() - pairs.size(),
              tb.rows.size() - pairs.size());
  std::printf("%-8s %10s %10s %11s %10s %12s %6s %6s %6s %9s\n", "metric", "mean A", "mean B",
              "mean A-B", "t-test p", "Wilcoxon p", "A wins", "B wins", "ties", "excluded");
  for (const auto& m : o.metrics) {
    const size_t ma = ta.column(m), mb = tb.column(m);
    std::vector<double> a, b;
    for (auto [i, j] : pairs) {
      a.push_back(parse_value(ta.rows[i][ma], o.a));
      b.push_back(parse_value(tb.rows[j][mb], o.b));
    }
    const bool higher_better = m == "dice" || m == "iou" || m == "nsd" ||
                               m.rfind("dice_click", 0) == 0;
    auto r = eval::compare_paired(a, b, higher_better);
    std::printf("%-8s %10.4f %10.4f %+11.4f %10.3g %12.3g %6lld %6lld %6lld %9lld\n", m.c_str(),
                r.mean_a, r.mean_b, r.mean_difference, r.t_p_value, r.wilcoxon.p_value,
                (long long)r.wins, (long long)r.losses, (long long)r.ties,
                (long long)r.n_excluded);
  }
  std::printf("\nt-test: paired, two-sided. Wilcoxon: signed-rank, two-sided (%s).\n"
              "Cases with a non-finite value in either file are excluded per metric.\n",
              "exact for n <= 25 without ties, else normal approximation");
  return 0;
}

const Register reg("compare", "Paired comparison of two evaluations (per_case.csv files)",
                   [](CLI::App& app) -> std::function<int()> {
                     auto o = std::make_shared<Options>();
                     app.add_option("a", o->a, "per_case.csv of method A")
                         ->required()
                         ->check(CLI::ExistingFile);
                     app.add_option("b", o->b, "per_case.csv of method B")
                         ->required()
                         ->check(CLI::ExistingFile);
                     app.add_option("--metrics", o->metrics, "columns to compare");
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
