#include "msam/eval/report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "msam/common/error.h"
#include "msam/io/png.h"
#include "msam/io/safetensors.h"

namespace msam::eval {
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

// ---- overlays ------------------------------------------------------------------------

constexpr int64_t kMinPanelHeight = 256;
constexpr int64_t kPanelGap = 4;
constexpr std::array<uint8_t, 3> kBackground{32, 32, 32};
constexpr std::array<uint8_t, 3> kGtColour{0, 255, 0};
constexpr std::array<uint8_t, 3> kPredColour{255, 0, 0};
constexpr std::array<uint8_t, 3> kForegroundClick{255, 255, 0};
constexpr std::array<uint8_t, 3> kBackgroundClick{0, 255, 255};

std::string shape_str(at::IntArrayRef s) { return c10::str(s); }

// numpy's default (linear) percentile of the finite values; NaN when there are none.
double percentile(std::vector<float>& v, double q) {
  if (v.empty()) return std::nan("");
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  const double a = v[i];
  if (i + 1 >= v.size() || pos == static_cast<double>(i)) return a;
  const double b = *std::min_element(v.begin() + i + 1, v.end());
  return a + (b - a) * (pos - static_cast<double>(i));
}

// The image windowed to [p1, p99] as uint8, same shape. Non-finite voxels are black.
at::Tensor window_to_grey(const at::Tensor& image) {
  const at::Tensor f = image.to(at::kFloat).contiguous();
  const float* p = f.data_ptr<float>();
  const int64_t n = f.numel();
  std::vector<float> finite;
  finite.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    if (std::isfinite(p[i])) finite.push_back(p[i]);
  const double lo = percentile(finite, 0.01);
  const double hi = percentile(finite, 0.99);
  at::Tensor grey = at::empty(f.sizes(), at::kByte);
  uint8_t* g = grey.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    double t;
    if (!std::isfinite(p[i])) t = 0.0;
    else if (hi > lo) t = std::clamp((p[i] - lo) / (hi - lo), 0.0, 1.0);
    else t = p[i] > hi ? 1.0 : 0.0;  // (nearly) constant volume
    g[i] = static_cast<uint8_t>(std::lround(t * 255.0));
  }
  return grey;
}

// The 2D mask minus its erosion by the 4-neighbourhood; outside the slice is background,
// so a mask touching the border is outlined there too.
at::Tensor contour_2d(const at::Tensor& mask) {
  const at::Tensor m = mask.to(at::kByte);
  const at::Tensor p = at::constant_pad_nd(m, {1, 1, 1, 1}, 0);
  using at::indexing::Slice;
  const at::Tensor eroded = m * p.index({Slice(0, -2), Slice(1, -1)}) *
                            p.index({Slice(2, at::indexing::None), Slice(1, -1)}) *
                            p.index({Slice(1, -1), Slice(0, -2)}) *
                            p.index({Slice(1, -1), Slice(2, at::indexing::None)});
  return (m - eroded).to(at::kBool);
}

// Slice (U, V) to display orientation (V rows, U columns): +v up, +u to the left.
at::Tensor to_display(const at::Tensor& slice) { return slice.flip({0, 1}).t().contiguous(); }

at::Tensor checked_mask(const at::Tensor& mask, at::IntArrayRef shape, const char* name) {
  if (!mask.defined()) return mask;
  if (mask.sizes() != shape)
    throw Error(std::string("render_overlay: ") + name + " has shape " + shape_str(mask.sizes()) +
                ", the image " + shape_str(shape));
  return mask.cpu() != 0;
}

struct Panel {
  int axis;  // the volume dim the slice is taken across: 2 axial, 1 coronal, 0 sagittal
  int64_t u_dim, v_dim;
};

class Canvas {
 public:
  Canvas(int64_t height, int64_t width) : rgb_(at::empty({height, width, 3}, at::kByte)) {
    w_ = width;
    for (int c = 0; c < 3; ++c) rgb_.select(2, c).fill_(kBackground[c]);
    data_ = rgb_.data_ptr<uint8_t>();
  }
  void set(int64_t row, int64_t col, const std::array<uint8_t, 3>& c) {
    uint8_t* px = data_ + (row * w_ + col) * 3;
    px[0] = c[0], px[1] = c[1], px[2] = c[2];
  }
  at::Tensor tensor() const { return rgb_; }

 private:
  at::Tensor rgb_;
  uint8_t* data_;
  int64_t w_;
};

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

// ---- overlays ------------------------------------------------------------------------

at::Tensor render_overlay(const at::Tensor& image, const at::Tensor& gt, const at::Tensor& pred,
                          const std::vector<interaction::Click>& clicks,
                          const data::Index3& center) {
  if (!image.defined() || image.dim() != 3 || image.numel() == 0)
    throw Error("render_overlay: expected a non-empty (X, Y, Z) image, got " +
                (image.defined() ? shape_str(image.sizes()) : std::string("an undefined tensor")));
  const at::IntArrayRef shape = image.sizes();
  const at::Tensor gt_mask = checked_mask(gt, shape, "ground truth");
  const at::Tensor pred_mask = checked_mask(pred, shape, "prediction");
  auto inside = [&](int64_t x, int64_t y, int64_t z) {
    return x >= 0 && y >= 0 && z >= 0 && x < shape[0] && y < shape[1] && z < shape[2];
  };
  const data::Index3& c = center;
  if (!inside(c[0], c[1], c[2]))
    throw Error("render_overlay: centre (" + std::to_string(c[0]) + ", " + std::to_string(c[1]) +
                ", " + std::to_string(c[2]) + ") lies outside the image " + shape_str(shape));
  for (size_t i = 0; i < clicks.size(); ++i) {
    const interaction::Click& k = clicks[i];
    if (!inside(k.voxel[0], k.voxel[1], k.voxel[2]))
      throw Error("render_overlay: click " + std::to_string(i) + " at (" +
                  std::to_string(k.voxel[0]) + ", " + std::to_string(k.voxel[1]) + ", " +
                  std::to_string(k.voxel[2]) +
                  ") lies outside the image " + shape_str(shape));
    if (k.label != 0 && k.label != 1)
      throw Error("render_overlay: click " + std::to_string(i) + " has label " +
                  std::to_string(k.label) + "; expected 1 (foreground) or 0 (background)");
  }

  const at::Tensor grey = window_to_grey(image.cpu());
  const std::array<Panel, 3> panels{Panel{2, 0, 1}, Panel{1, 0, 2}, Panel{0, 1, 2}};
  const int64_t min_height = std::min(shape[1], shape[2]);
  const int64_t scale = std::max<int64_t>(1, (kMinPanelHeight + min_height - 1) / min_height);
  const int64_t height = std::max(shape[1], shape[2]) * scale;
  const int64_t width = (2 * shape[0] + shape[1]) * scale + 2 * kPanelGap;
  Canvas canvas(height, width);
  // Click squares are 2·half + 1 px wide: a little over one voxel, at least 7 px.
  const int64_t half = std::max<int64_t>(3, scale / 2 + 1);

  int64_t left = 0;
  for (const Panel& p : panels) {
    const int64_t U = shape[p.u_dim], V = shape[p.v_dim];
    const at::Tensor g = to_display(grey.select(p.axis, c[p.axis]));
    const at::Tensor gt_c = gt_mask.defined()
        ? to_display(contour_2d(gt_mask.select(p.axis, c[p.axis]))) : at::Tensor();
    const at::Tensor pred_c = pred_mask.defined()
        ? to_display(contour_2d(pred_mask.select(p.axis, c[p.axis]))) : at::Tensor();
    const auto ga = g.accessor<uint8_t, 2>();
    const bool* gt_px = gt_c.defined() ? gt_c.data_ptr<bool>() : nullptr;
    const bool* pred_px = pred_c.defined() ? pred_c.data_ptr<bool>() : nullptr;
    for (int64_t r = 0; r < V; ++r) {
      for (int64_t col = 0; col < U; ++col) {
        std::array<uint8_t, 3> colour{ga[r][col], ga[r][col], ga[r][col]};
        if (pred_px && pred_px[r * U + col]) colour = kPredColour;
        else if (gt_px && gt_px[r * U + col]) colour = kGtColour;
        for (int64_t dr = 0; dr < scale; ++dr)
          for (int64_t dc = 0; dc < scale; ++dc)
            canvas.set(r * scale + dr, left + col * scale + dc, colour);
      }
    }
    for (const interaction::Click& k : clicks) {
      const data::Index3& pos = k.voxel;
      if (std::abs(pos[p.axis] - c[p.axis]) > 1) continue;
      const int64_t row = (V - 1 - pos[p.v_dim]) * scale + scale / 2;
      const int64_t col = (U - 1 - pos[p.u_dim]) * scale + scale / 2;
      for (int64_t rr = row - half; rr <= row + half; ++rr)
        for (int64_t cc = col - half; cc <= col + half; ++cc) {
          if (rr < 0 || cc < 0 || rr >= V * scale || cc >= U * scale) continue;  // this panel only
          canvas.set(rr, left + cc, k.label == 1 ? kForegroundClick : kBackgroundClick);
        }
    }
    left += U * scale + kPanelGap;
  }
  return canvas.tensor();
}

void render_overlay_png(const std::string& path, const at::Tensor& image, const at::Tensor& gt,
                        const at::Tensor& pred, const std::vector<interaction::Click>& clicks,
                        const data::Index3& center) {
  at::Tensor rgb;
  try {
    rgb = render_overlay(image, gt, pred, clicks, center);
  } catch (const Error& e) {
    throw file_error(path, e.what());
  }
  io::write_png(path, rgb);
}

// ---- CSV -----------------------------------------------------------------------------

std::string csv_escape(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  return buf;
}

CsvWriter::CsvWriter(std::string path, std::vector<std::string> header)
    : path_(std::move(path)), width_(header.size()) {
  if (header.empty()) throw file_error(path_, "CSV header has no columns");
  add_row(header);
}

void CsvWriter::add_row(const std::vector<std::string>& fields) {
  if (closed_) throw file_error(path_, "CSV row added after close()");
  if (fields.size() != width_)
    throw file_error(path_, "CSV row has " + std::to_string(fields.size()) +
                                " fields but the header has " + std::to_string(width_));
  // A lone empty field is quoted so the line is not blank (readers skip blank lines).
  if (fields.size() == 1 && fields[0].empty()) {
    text_ += "\"\"\n";
    return;
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) text_ += ',';
    text_ += csv_escape(fields[i]);
  }
  text_ += '\n';
}

void CsvWriter::close() {
  if (closed_) return;
  io::write_file_atomically(path_, text_);
  closed_ = true;
}

size_t CsvTable::column(const std::string& name) const {
  const auto it = std::find(header.begin(), header.end(), name);
  if (it == header.end()) throw file_error(source, "no column '" + name + "'");
  return static_cast<size_t>(it - header.begin());
}

CsvTable parse_csv(const std::string& text, const std::string& source) {
  auto fail = [&](size_t line, const std::string& problem) {
    return Error(source + ":" + std::to_string(line) + ": " + problem);
  };
  CsvTable table;
  table.source = source;
  const size_t n = text.size();
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  size_t line = 1;
  // Consumes a line ending (LF, CRLF or a lone CR) at i, if any.
  auto end_of_line = [&]() {
    if (i < n && text[i] == '\r') ++i;
    else if (i >= n || text[i] != '\n') return false;
    if (i < n && text[i] == '\n') ++i;
    ++line;
    return true;
  };
  bool have_header = false;
  while (i < n) {
    if (end_of_line()) continue;  // blank line
    const size_t record_line = line;
    std::vector<std::string> fields;
    while (true) {
      std::string field;
      if (i < n && text[i] == '"') {
        const size_t quote_line = line;
        ++i;
        while (true) {
          if (i >= n) throw fail(quote_line, "unterminated quoted field");
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          throw fail(line, "text after a closing quote");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"') throw fail(line, "quote inside an unquoted field");
          field += text[i++];
        }
      }
      fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      end_of_line();
      break;
    }
    if (!have_header) {
      std::set<std::string> seen;
      for (const std::string& h : fields)
        if (!seen.insert(h).second) throw fail(record_line, "duplicate column '" + h + "'");
      table.header = std::move(fields);
      have_header = true;
    } else {
      if (fields.size() != table.header.size())
        throw fail(record_line, "row has " + std::to_string(fields.size()) +
                                    " fields but the header has " +
                                    std::to_string(table.header.size()));
      table.rows.push_back(std::move(fields));
    }
  }
  if (!have_header) throw file_error(source, "empty CSV file, no header");
  return table;
}

CsvTable read_csv(const std::string& path) { return parse_csv(io::read_file(path), path); }

}  // namespace msam::eval
