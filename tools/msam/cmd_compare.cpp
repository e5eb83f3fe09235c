// msam compare A/per_case.csv B/per_case.csv: paired comparison over the shared cases.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "command.h"
#include "msam/common/error.h"
#include "msam/eval/metric_table.h"
#include "msam/io/csv.h"
#include "msam/eval/statistics.h"

namespace msam::cli {
namespace {

struct Options {
  std::string a, b;
  std::vector<std::string> metrics;  // empty: every metric of the table both files hold
};

bool has_column(const io::CsvTable& t, const std::string& name) {
  return std::find(t.header.begin(), t.header.end(), name) != t.header.end();
}

// The metrics of both scopes (not Dice per click) that both files hold, in table order; says
// which metric columns only one file has, since a model's evaluation and another tool's
// scored masks differ in their columns.
std::vector<std::string> common_metrics(const io::CsvTable& a, const io::CsvTable& b) {
  std::vector<std::string> out;
  for (const auto* scope : {&eval::kCropScope, &eval::kOriginalScope})
    for (const auto& m : eval::metric_table()) {
      const std::string column = std::string(scope->prefix) + m.name;
      if (has_column(a, column) && has_column(b, column)) out.push_back(column);
    }
  for (const auto* t : {&a, &b}) {
    const auto& other = t == &a ? b : a;
    std::string only;
    for (const auto& column : t->header)
      if (eval::metric_of_column(column) && !has_column(other, column))
        only += (only.empty() ? "" : " ") + column;
    if (!only.empty()) std::printf("only in %s (not compared): %s\n", t->source.c_str(), only.c_str());
  }
  if (out.empty()) throw Error(a.source + " and " + b.source + " share no metric column");
  return out;
}

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
  auto ta = io::read_csv(o.a), tb = io::read_csv(o.b);
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
  // Scored masks of another tool (msam eval --predictions) may leave cases unscored, with
  // nan metrics: say so, since the table below only counts them as excluded.
  for (const auto* t : {&ta, &tb}) {
    if (!has_column(*t, "status")) continue;
    const size_t col = t->column("status");
    size_t n = 0;
    for (const auto& row : t->rows) n += row[col] != "scored";
    if (n) std::printf("%s: %zu cases not scored (see its status column)\n", t->source.c_str(), n);
  }
  const auto metrics = o.metrics.empty() ? common_metrics(ta, tb) : o.metrics;
  std::printf("%-10s %10s %10s %11s %10s %12s %6s %6s %6s %9s\n", "metric", "mean A", "mean B",
              "mean A-B", "t-test p", "Wilcoxon p", "A wins", "B wins", "ties", "excluded");
  for (const auto& m : metrics) {
    const size_t ma = ta.column(m), mb = tb.column(m);
    std::vector<double> a, b;
    for (auto [i, j] : pairs) {
      a.push_back(parse_value(ta.rows[i][ma], o.a));
      b.push_back(parse_value(tb.rows[j][mb], o.b));
    }
    auto r = eval::compare_paired(a, b, eval::higher_is_better(m));
    std::printf("%-10s %10.4f %10.4f %+11.4f %10.3g %12.3g %6lld %6lld %6lld %9lld\n", m.c_str(),
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
                     app.add_option("--metrics", o->metrics,
                                    "columns to compare (default: the metrics both files hold)");
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
