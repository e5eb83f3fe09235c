#include "msam/io/svg_chart.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"

namespace msam::io {
namespace {

// ---- line charts ---------------------------------------------------------------------

// Matplotlib's "tab10", distinguishable for most colour-vision deficiencies.
constexpr std::array<const char*, 10> kPalette{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                               "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                               "#bcbd22", "#17becf"};

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// A 1, 2 or 5 × 10^k step giving about `target` intervals over `span`.
double nice_step(double span, int target) {
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}

struct Axis {
  double lo, hi, step;
  // Px position of v along an axis drawn from p0 (at lo) to p1 (at hi).
  double map(double v, double p0, double p1) const { return p0 + (v - lo) / (hi - lo) * (p1 - p0); }
  std::vector<double> ticks() const {
    std::vector<double> out;
    const long first = static_cast<long>(std::ceil(lo / step - 1e-9));
    const long last = static_cast<long>(std::floor(hi / step + 1e-9));
    for (long i = first; i <= last; ++i) out.push_back(i * step);
    return out;
  }
  std::string label(double v) const {
    const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
    if (std::abs(v) < step * 1e-9) v = 0.0;  // no "-0.0"
    return fixed(v, decimals);
  }
};

// Data range [lo, hi] (lo > hi when there is no data) to an axis. `snap` widens the ends to
// whole steps, which pads auto-scaled y axes; x axes keep the data's ends.
Axis make_axis(double lo, double hi, bool snap) {
  if (!(lo <= hi)) lo = 0.0, hi = 1.0;
  if (lo == hi) {
    const double pad = lo == 0.0 ? 0.5 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  Axis a{lo, hi, nice_step(hi - lo, 6)};
  if (snap) {
    a.lo = std::floor(lo / a.step + 1e-9) * a.step;
    a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  }
  return a;
}

void check_series(const Series& s) {
  if (s.x.size() != s.y.size())
    throw Error("chart series '" + s.name + "': " + std::to_string(s.x.size()) + " x values but " +
                std::to_string(s.y.size()) + " y values");
  if (!s.y_std.empty() && s.y_std.size() != s.y.size())
    throw Error("chart series '" + s.name + "': " + std::to_string(s.y_std.size()) +
                " y_std values for " + std::to_string(s.y.size()) + " points");
}

// Index runs [begin, end) of consecutive points for which `ok(i)` holds.
template <class Ok>
std::vector<std::pair<size_t, size_t>> runs(size_t n, Ok ok) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t i = 0;
  while (i < n) {
    while (i < n && !ok(i)) ++i;
    const size_t begin = i;
    while (i < n && ok(i)) ++i;
    if (i > begin) out.emplace_back(begin, i);
  }
  return out;
}

// Advance widths of Helvetica (Arial has the same), in 1/1000 em, for ASCII 32..126.
constexpr std::array<uint16_t, 95> kHelveticaWidths{
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,  //  !"#$%&'()*+,-./
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,  // 0-9 :;<=>?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,  // @A-O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,   // P-Z [\]^_
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,   // `a-o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584};       // p-z {|}~

// `s` split into UTF-8 characters, so that wrapping never cuts one in two.
std::vector<std::string> characters(const std::string& s) {
  std::vector<std::string> out;
  for (char c : s) {
    if (out.empty() || (static_cast<unsigned char>(c) & 0xC0) != 0x80) out.emplace_back();
    out.back() += c;
  }
  return out;
}

// Width in px of `text` at `font_px` in Helvetica; a character outside ASCII counts as one
// em, about the widest a Latin, Greek or CJK glyph is. Legend text is drawn with this width
// as its textLength, so a renderer with another font fits it to the same width.
double text_width(const std::string& text, double font_px) {
  double em = 0;
  for (const auto& ch : characters(text)) {
    const int c = static_cast<unsigned char>(ch[0]);
    em += ch.size() == 1 && c >= 32 && c < 127 ? kHelveticaWidths[c - 32] / 1000.0 : 1.0;
  }
  return em * font_px;
}

// `text` in lines no wider than `max_px`: broken at spaces, and inside a word only when the
// word alone is wider.
std::vector<std::string> wrap(const std::string& text, double font_px, double max_px) {
  std::vector<std::string> lines{""};
  const auto fits = [&](const std::string& t) { return text_width(t, font_px) <= max_px; };
  std::string word;
  const auto place_word = [&] {
    if (word.empty()) return;
    const std::string joined = lines.back().empty() ? word : lines.back() + " " + word;
    if (fits(joined)) {
      lines.back() = joined;
    } else {
      if (!lines.back().empty()) lines.emplace_back();
      for (const auto& ch : characters(word)) {
        if (!lines.back().empty() && !fits(lines.back() + ch)) lines.emplace_back();
        lines.back() += ch;
      }
    }
    word.clear();
  };
  for (char c : text) {
    if (c == ' ') place_word();
    else word += c;
  }
  place_word();
  return lines;
}

struct LegendLine {
  std::string text;
  double x, y, width;
};
struct LegendEntry {
  double x, y;  // left end of the colour swatch, on the first line's middle
  std::vector<LegendLine> lines;
};
struct Legend {
  double font_px = 12, swatch = 22, left = 0;  // left: the legend's left edge
  std::vector<LegendEntry> entries;
};

// The legend in columns ending at `right`, between `top` and `bottom`, no wider than
// `max_width`, names wrapped to fit. When the entries need more room at 12 px, the font (and
// swatches) shrink until they fit, so every element lies inside the picture whatever the
// number and length of the names.
Legend layout_legend(const std::vector<Series>& series, double right, double top, double bottom,
                     double max_width) {
  for (double font = 12;; font *= 0.85) {
    Legend g;
    g.font_px = font;
    const double scale = font / 12, gap = 6 * scale, column_gap = 12 * scale;
    const double line_h = 1.25 * font, entry_gap = 0.5 * font;
    g.swatch = 22 * scale;
    const double text_left = g.swatch + gap;
    // Columns of (entry, its lines); entries flow down, then into the next column.
    std::vector<std::vector<std::pair<size_t, std::vector<std::string>>>> columns(1);
    double y = top, total = 0, column_w = 0;
    bool fits = true;
    for (size_t k = 0; k < series.size() && fits; ++k) {
      auto lines = wrap(series[k].name, font, max_width - text_left);
      const double h = line_h * static_cast<double>(lines.size());
      if (y + h > bottom && !columns.back().empty()) {
        total += column_w + column_gap, column_w = 0, y = top;
        columns.emplace_back();
      }
      fits = y + h <= bottom;
      for (const auto& l : lines) column_w = std::max(column_w, text_left + text_width(l, font));
      columns.back().emplace_back(k, std::move(lines));
      y += h + entry_gap;
    }
    total += column_w;
    if (!fits || total > max_width) continue;
    g.left = right - total;
    double x = g.left;
    for (const auto& column : columns) {
      double w = 0;
      y = top;
      for (const auto& [k, lines] : column) {
        LegendEntry e{x, y + line_h / 2, {}};
        for (const auto& l : lines) {
          const double lw = text_width(l, font);
          e.lines.push_back({l, x + text_left, y + line_h / 2, lw});
          w = std::max(w, text_left + lw);
          y += line_h;
        }
        g.entries.push_back(std::move(e));
        y += entry_gap;
      }
      x += w + column_gap;
    }
    return g;
  }
}

}  // namespace

// ---- line charts ---------------------------------------------------------------------

std::string line_chart_svg(const ChartSpec& spec) {
  if (spec.width < 320 || spec.height < 200)
    throw Error("chart '" + spec.title + "': size " + std::to_string(spec.width) + "x" +
                std::to_string(spec.height) + " is below the 320x200 minimum");
  for (const Series& s : spec.series) check_series(s);
  if (spec.y_min && spec.y_max && !(*spec.y_min < *spec.y_max))
    throw Error("chart '" + spec.title + "': y_min must be below y_max");

  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const Series& s : spec.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double sd = !s.y_std.empty() && std::isfinite(s.y_std[i]) ? std::abs(s.y_std[i]) : 0;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i] - sd), yhi = std::max(yhi, s.y[i] + sd);
    }
  }
  const Axis xa = make_axis(xlo, xhi, false);
  if (spec.y_min) ylo = *spec.y_min;
  if (spec.y_max) yhi = *spec.y_max;
  Axis ya = make_axis(ylo, yhi, true);
  if (spec.y_min && spec.y_max) ya.lo = *spec.y_min, ya.hi = *spec.y_max;

  const double left = 72, top = 44, bottom = 56, margin = 8;
  // The legend takes what its names need, at most 40% of the width; the plot the rest.
  const Legend legend = layout_legend(spec.series, spec.width - margin, top,
                                      spec.height - margin, 0.4 * spec.width);
  const double x0 = left, x1 = (legend.entries.empty() ? spec.width - margin : legend.left) - 16;
  const double y0 = top, y1 = spec.height - bottom;
  auto px = [&](double x) { return fixed(xa.map(x, x0, x1), 2); };
  auto py = [&](double y) { return fixed(ya.map(y, y1, y0), 2); };
  const std::string W = std::to_string(spec.width), H = std::to_string(spec.height);

  std::string o;
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + W + "\" height=\"" + H +
       "\" viewBox=\"0 0 " + W + " " + H + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"" + W + "\" height=\"" + H + "\" fill=\"white\"/>\n";
  o += "<defs><clipPath id=\"plot-area\"><rect x=\"" + fixed(x0, 2) + "\" y=\"" + fixed(y0, 2) +
       "\" width=\"" + fixed(x1 - x0, 2) + "\" height=\"" + fixed(y1 - y0, 2) +
       "\"/></clipPath></defs>\n";
  o += "<text class=\"title\" x=\"" + fixed((x0 + x1) / 2, 2) +
       "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">" +
       xml_escape(spec.title) + "</text>\n";

  o += "<g class=\"axes\" stroke=\"#000\">\n";
  for (double t : xa.ticks()) {
    o += "<line x1=\"" + px(t) + "\" y1=\"" + fixed(y0, 2) + "\" x2=\"" + px(t) + "\" y2=\"" +
         fixed(y1, 2) + "\" stroke=\"#ddd\"/>\n";
    o += "<line x1=\"" + px(t) + "\" y1=\"" + fixed(y1, 2) + "\" x2=\"" + px(t) + "\" y2=\"" +
         fixed(y1 + 5, 2) + "\"/>\n";
    o += "<text class=\"x-tick\" x=\"" + px(t) + "\" y=\"" + fixed(y1 + 18, 2) +
         "\" text-anchor=\"middle\" stroke=\"none\">" + xa.label(t) + "</text>\n";
  }
  for (double t : ya.ticks()) {
    o += "<line x1=\"" + fixed(x0, 2) + "\" y1=\"" + py(t) + "\" x2=\"" + fixed(x1, 2) +
         "\" y2=\"" + py(t) + "\" stroke=\"#ddd\"/>\n";
    o += "<line x1=\"" + fixed(x0 - 5, 2) + "\" y1=\"" + py(t) + "\" x2=\"" + fixed(x0, 2) +
         "\" y2=\"" + py(t) + "\"/>\n";
    o += "<text class=\"y-tick\" x=\"" + fixed(x0 - 8, 2) + "\" y=\"" + py(t) +
         "\" text-anchor=\"end\" dominant-baseline=\"middle\" stroke=\"none\">" + ya.label(t) +
         "</text>\n";
  }
  o += "<rect x=\"" + fixed(x0, 2) + "\" y=\"" + fixed(y0, 2) + "\" width=\"" + fixed(x1 - x0, 2) +
       "\" height=\"" + fixed(y1 - y0, 2) + "\" fill=\"none\"/>\n";
  o += "</g>\n";
  o += "<text class=\"x-label\" x=\"" + fixed((x0 + x1) / 2, 2) + "\" y=\"" +
       fixed(spec.height - 14.0, 2) + "\" text-anchor=\"middle\">" + xml_escape(spec.x_label) +
       "</text>\n";
  const std::string ymid = fixed((y0 + y1) / 2, 2);
  o += "<text class=\"y-label\" x=\"18\" y=\"" + ymid +
       "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " + ymid + ")\">" +
       xml_escape(spec.y_label) + "</text>\n";

  for (size_t k = 0; k < spec.series.size(); ++k) {
    const Series& s = spec.series[k];
    const std::string colour = kPalette[k % kPalette.size()];
    o += "<g class=\"series\" data-name=\"" + xml_escape(s.name) +
         "\" clip-path=\"url(#plot-area)\">\n";
    auto finite_point = [&](size_t i) { return std::isfinite(s.x[i]) && std::isfinite(s.y[i]); };
    if (!s.y_std.empty()) {
      auto banded = [&](size_t i) { return finite_point(i) && std::isfinite(s.y_std[i]); };
      for (auto [b, e] : runs(s.y.size(), banded)) {
        std::string pts;
        for (size_t i = b; i < e; ++i)  // upper edge forwards, lower edge back
          pts += px(s.x[i]) + "," + py(s.y[i] + std::abs(s.y_std[i])) + " ";
        for (size_t i = e; i-- > b;)
          pts += px(s.x[i]) + "," + py(s.y[i] - std::abs(s.y_std[i])) + " ";
        pts.pop_back();
        o += "<polygon class=\"band\" points=\"" + pts + "\" fill=\"" + colour +
             "\" fill-opacity=\"0.2\" stroke=\"none\"/>\n";
      }
    }
    for (auto [b, e] : runs(s.y.size(), finite_point)) {
      if (e - b == 1) {
        o += "<circle cx=\"" + px(s.x[b]) + "\" cy=\"" + py(s.y[b]) + "\" r=\"2.5\" fill=\"" +
             colour + "\"/>\n";
        continue;
      }
      std::string pts;
      for (size_t i = b; i < e; ++i) pts += px(s.x[i]) + "," + py(s.y[i]) + " ";
      pts.pop_back();
      o += "<polyline points=\"" + pts + "\" fill=\"none\" stroke=\"" + colour +
           "\" stroke-width=\"1.8\"/>\n";
    }
    o += "</g>\n";
  }

  o += "<g class=\"legend\" font-size=\"" + fixed(legend.font_px, 2) + "\">\n";
  for (size_t k = 0; k < legend.entries.size(); ++k) {
    const LegendEntry& e = legend.entries[k];
    o += "<line x1=\"" + fixed(e.x, 2) + "\" y1=\"" + fixed(e.y, 2) + "\" x2=\"" +
         fixed(e.x + legend.swatch, 2) + "\" y2=\"" + fixed(e.y, 2) + "\" stroke=\"" +
         kPalette[k % kPalette.size()] + "\" stroke-width=\"" + fixed(legend.font_px / 4, 2) +
         "\"/>\n";
    for (const LegendLine& l : e.lines)
      o += "<text x=\"" + fixed(l.x, 2) + "\" y=\"" + fixed(l.y, 2) + "\" textLength=\"" +
           fixed(l.width, 2) + "\" lengthAdjust=\"spacingAndGlyphs\" dominant-baseline=\"middle\">" +
           xml_escape(l.text) + "</text>\n";
  }
  o += "</g>\n</svg>\n";
  return o;
}

void write_line_chart_svg(const std::string& path, const ChartSpec& spec) {
  std::string svg;
  try {
    svg = line_chart_svg(spec);
  } catch (const Error& e) {
    throw file_error(path, e.what());
  }
  io::write_file_atomically(path, svg);
}

}  // namespace msam::io
