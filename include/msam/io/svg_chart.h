// SVG line charts (training curves, Dice vs clicks): a file format below train/ and eval/,
// which both draw with it.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace msam::io {

struct Series {
  std::string name;       // legend text
  std::vector<double> x;  // same length as y
  std::vector<double> y;  // a non-finite x or y is a gap: the line breaks there
  // Optional shaded band y ± y_std (e.g. across cases); empty, or the same length as y.
  std::vector<double> y_std;
};

struct ChartSpec {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  // Fixed y axis (e.g. Dice in [0, 1]); otherwise the data range, padded. Points outside a
  // fixed range are clipped at the plot area.
  std::optional<double> y_min, y_max;
  int width = 760, height = 440;  // pixels, legend included
};

// A standalone SVG document: axes with numbered ticks, labels, title, a legend and one
// <g class="series"> per series holding one <polyline> per unbroken run of points (a lone
// point between gaps is a <circle>) and, with y_std, a translucent <polygon> band.
// Throws msam::Error naming the series when x, y and y_std lengths disagree.
std::string line_chart_svg(const ChartSpec& spec);
void write_line_chart_svg(const std::string& path, const ChartSpec& spec);  // atomic

}  // namespace msam::io
