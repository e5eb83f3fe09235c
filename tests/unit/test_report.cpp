#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/eval/overlay.h"
#include "msam/io/csv.h"
#include "msam/io/svg_chart.h"
#include "msam/io/png.h"
#include "msam/io/safetensors.h"

using namespace msam;

namespace {

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

// An independent PNG reader for what encode_png writes (8-bit grey/RGB, no interlacing):
// walks the chunks checking every CRC, inflates the IDAT stream and undoes filter type 0.
torch::Tensor decode_png(const std::string& png) {
  if (png.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0)
    throw std::runtime_error("bad PNG signature");
  size_t at = 8;
  uint32_t width = 0, height = 0;
  int colour_type = -1;
  std::string idat;
  bool ended = false;
  std::vector<std::string> order;
  while (at < png.size()) {
    if (at + 12 > png.size()) throw std::runtime_error("truncated chunk");
    const uint32_t len = be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    const std::string data = png.substr(at + 8, len);
    const uint32_t crc = be32(png, at + 8 + len);
    const uLong want = crc32(crc32(0L, Z_NULL, 0),
                             reinterpret_cast<const Bytef*>(png.data() + at + 4), len + 4);
    if (crc != want) throw std::runtime_error("bad CRC in chunk " + type);
    order.push_back(type);
    if (type == "IHDR") {
      width = be32(data, 0), height = be32(data, 4);
      if (data[8] != 8 || data[10] != 0 || data[11] != 0 || data[12] != 0)
        throw std::runtime_error("unexpected IHDR fields");
      colour_type = data[9];
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      ended = true;
    }
    at += 12 + len;
  }
  if (!ended || order.front() != "IHDR" || order.back() != "IEND")
    throw std::runtime_error("chunks out of order");
  const int channels = colour_type == 2 ? 3 : colour_type == 0 ? 1 : 0;
  if (channels == 0) throw std::runtime_error("unexpected colour type");
  const size_t row_bytes = size_t(width) * channels;
  std::string raw(size_t(height) * (row_bytes + 1), '\0');
  uLongf raw_len = raw.size();
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_len,
                 reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_len != raw.size())
    throw std::runtime_error("IDAT does not inflate to the image size");
  auto out = torch::empty({int64_t(height), int64_t(width), channels}, torch::kByte);
  for (uint32_t r = 0; r < height; ++r) {
    const size_t line = r * (row_bytes + 1);
    if (raw[line] != 0) throw std::runtime_error("unexpected filter type");
    std::memcpy(out.data_ptr<uint8_t>() + r * row_bytes, raw.data() + line + 1, row_bytes);
  }
  return channels == 1 ? out.squeeze(2) : out;
}

// Every <tag> closed in order; returns the number of elements.
int check_balanced_xml(const std::string& svg) {
  std::vector<std::string> stack;
  int elements = 0;
  size_t at = svg.find("<svg");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  while ((at = svg.find('<', at)) != std::string::npos) {
    const size_t end = svg.find('>', at);
    EXPECT_NE(end, std::string::npos);
    const std::string tag = svg.substr(at + 1, end - at - 1);
    at = end + 1;
    if (tag[0] == '/') {
      EXPECT_FALSE(stack.empty()) << tag;
      if (stack.empty()) return elements;
      EXPECT_EQ(stack.back(), tag.substr(1));
      stack.pop_back();
      continue;
    }
    ++elements;
    if (tag.back() == '/') continue;
    stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
  }
  EXPECT_TRUE(stack.empty());
  return elements;
}

// The <g class="series"> group of the named series.
std::string series_group(const std::string& svg, const std::string& name) {
  const size_t begin = svg.find("<g class=\"series\" data-name=\"" + name + "\"");
  if (begin == std::string::npos) return "";
  return svg.substr(begin, svg.find("</g>", begin) - begin);
}

// Points per <polyline> in a fragment, in order.
std::vector<int> polyline_lengths(const std::string& fragment) {
  std::vector<int> out;
  static const std::regex re("<polyline points=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(fragment.begin(), fragment.end(), re);
       it != std::sregex_iterator(); ++it) {
    const std::string pts = (*it)[1];
    out.push_back(int(std::count(pts.begin(), pts.end(), ' ')) + 1);
  }
  return out;
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

std::array<int, 3> pixel(const torch::Tensor& rgb, int64_t row, int64_t col) {
  auto a = rgb.accessor<uint8_t, 3>();
  return {a[row][col][0], a[row][col][1], a[row][col][2]};
}

}  // namespace

// ---- PNG -------------------------------------------------------------------------------

TEST(Png, GreyAndRgbRoundTripThroughZlib) {
  const auto grey = torch::randint(0, 256, {7, 13}, torch::kByte);
  EXPECT_TRUE(torch::equal(decode_png(io::encode_png(grey)), grey));

  const auto rgb = torch::randint(0, 256, {5, 9, 3}, torch::kByte);
  const std::string path = test::temp_dir("png") + "/rgb.png";
  io::write_png(path, rgb);
  EXPECT_TRUE(torch::equal(decode_png(io::read_file(path)), rgb));

  // A non-contiguous view is written as the pixels it shows.
  const auto view = rgb.transpose(0, 1);
  EXPECT_TRUE(torch::equal(decode_png(io::encode_png(view)), view));
}

TEST(Png, RejectsWrongDtypeAndShapeNamingTheFile) {
  const std::string path = test::temp_dir("png-bad") + "/x.png";
  try {
    io::write_png(path, torch::zeros({4, 4}));
    FAIL() << "float image accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("uint8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(io::encode_png(torch::zeros({4, 4, 4}, torch::kByte)), Error);
  EXPECT_THROW(io::encode_png(torch::zeros({4}, torch::kByte)), Error);
  EXPECT_THROW(io::encode_png(torch::zeros({0, 4}, torch::kByte)), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- charts ----------------------------------------------------------------------------

TEST(LineChart, SeriesBecomePolylinesBrokenAtGaps) {
  const double nan = std::nan("");
  io::ChartSpec spec;
  spec.title = "Loss & Dice <train/val>";
  spec.x_label = "epoch";
  spec.y_label = "Dice";
  spec.y_min = 0.0;
  spec.y_max = 1.0;
  spec.series.push_back({"train", {1, 2, 3, 4, 5}, {0.2, 0.4, 0.5, 0.6, 0.7}, {}});
  // A gap at epoch 3 splits the line; the lone point after the second gap is a circle.
  spec.series.push_back({"val", {1, 2, 3, 4, 5, 6, 7}, {0.1, 0.3, nan, 0.5, 0.55, nan, 0.6}, {}});
  spec.series.push_back(
      {"mean ± std", {1, 2, 3}, {0.5, 0.6, 0.7}, {0.1, 0.05, 0.02}});
  const std::string svg = io::line_chart_svg(spec);

  EXPECT_GT(check_balanced_xml(svg), 20);
  EXPECT_EQ(count(svg, "<g class=\"series\""), 3);
  EXPECT_EQ(polyline_lengths(series_group(svg, "train")), (std::vector<int>{5}));
  EXPECT_EQ(polyline_lengths(series_group(svg, "val")), (std::vector<int>{2, 2}));
  EXPECT_EQ(count(series_group(svg, "val"), "<circle"), 1);
  EXPECT_EQ(count(series_group(svg, "train"), "<polygon"), 0);
  const std::string band = series_group(svg, "mean ± std");
  EXPECT_EQ(count(band, "<polygon class=\"band\""), 1);
  EXPECT_EQ(polyline_lengths(band), (std::vector<int>{3}));

  // Escaped text, labels, the fixed y axis ticks and a legend entry per series.
  EXPECT_NE(svg.find("Loss &amp; Dice &lt;train/val&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">epoch</text>"), std::string::npos);
  EXPECT_NE(svg.find(">Dice</text>"), std::string::npos);
  EXPECT_EQ(count(svg, "class=\"y-tick\""), 6);
  for (const char* tick : {">0.0<", ">0.2<", ">0.4<", ">0.6<", ">0.8<", ">1.0<"})
    EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  const std::string legend = svg.substr(svg.find("<g class=\"legend\""));
  for (const char* name : {">train<", ">val<", ">mean ± std<"})
    EXPECT_NE(legend.find(name), std::string::npos) << name;

  const std::string path = test::temp_dir("chart") + "/curve.svg";
  io::write_line_chart_svg(path, spec);
  EXPECT_EQ(io::read_file(path), svg);
}

TEST(LineChart, AutoRangeCoversTheDataAndPointsLieInsideThePlot) {
  io::ChartSpec spec;
  spec.series.push_back({"loss", {0, 10, 20}, {3.2, 1.1, 0.4}, {}});
  const std::string svg = io::line_chart_svg(spec);
  check_balanced_xml(svg);
  std::smatch m;
  const std::regex clip("<clipPath id=\"plot-area\"><rect x=\"([0-9.]+)\" y=\"([0-9.]+)\" "
                        "width=\"([0-9.]+)\" height=\"([0-9.]+)\"");
  ASSERT_TRUE(std::regex_search(svg, m, clip));
  const double x0 = std::stod(m[1]), y0 = std::stod(m[2]);
  const double x1 = x0 + std::stod(m[3]), y1 = y0 + std::stod(m[4]);
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("<polyline points=\"([^\"]*)\"")));
  std::stringstream pts(m[1].str());
  std::vector<std::pair<double, double>> xy;
  for (std::string p; pts >> p;) {
    const size_t comma = p.find(',');
    xy.emplace_back(std::stod(p.substr(0, comma)), std::stod(p.substr(comma + 1)));
  }
  ASSERT_EQ(xy.size(), 3u);
  EXPECT_NEAR(xy[0].first, x0, 0.01);  // x axis spans the data exactly
  EXPECT_NEAR(xy[2].first, x1, 0.01);
  for (auto [x, y] : xy) EXPECT_TRUE(y >= y0 && y <= y1) << y;
  EXPECT_LT(xy[0].second, xy[2].second);  // larger loss is higher up (smaller y)
  EXPECT_NE(svg.find(">20<"), std::string::npos);  // integer x ticks print without decimals
}

namespace {

// Numeric attribute `name` of the first tag in `tag`.
double attribute(const std::string& tag, const std::string& name) {
  std::smatch m;
  const std::regex re(" " + name + "=\"([-0-9.]+)\"");
  if (!std::regex_search(tag, m, re)) throw std::runtime_error("no " + name + " in " + tag);
  return std::stod(m[1]);
}

// Every legend swatch and text of `svg` lies inside its viewBox (0 0 W H) and right of the
// plot area. Texts carry textLength, the width a renderer draws them at whatever the font,
// and are vertically centred on y. Returns the legend texts, in order.
std::vector<std::string> expect_legend_inside(const std::string& svg) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(svg, m, std::regex("viewBox=\"0 0 ([0-9]+) ([0-9]+)\"")));
  const double width = std::stod(m[1]), height = std::stod(m[2]);
  EXPECT_TRUE(std::regex_search(svg, m, std::regex("<clipPath id=\"plot-area\"><rect x=\"([0-9.]+)\" "
                                                   "y=\"[0-9.]+\" width=\"([0-9.]+)\"")));
  const double plot_right = std::stod(m[1]) + std::stod(m[2]);
  const auto begin = svg.find("<g class=\"legend\"");
  const std::string legend = svg.substr(begin, svg.find("</g>", begin) - begin);
  const double font = attribute(legend, "font-size");
  std::vector<std::string> texts;
  const std::regex element("<(line|text)([^>]*)>(([^<]*)</text>)?");
  for (auto it = std::sregex_iterator(legend.begin(), legend.end(), element); it != std::sregex_iterator(); ++it) {
    const std::string attrs = (*it)[2];
    double left, right, top, bottom;
    if ((*it)[1] == "line") {
      left = attribute(attrs, "x1"), right = attribute(attrs, "x2");
      top = bottom = attribute(attrs, "y1");
    } else {
      left = attribute(attrs, "x");
      right = left + attribute(attrs, "textLength");
      top = attribute(attrs, "y") - font / 2, bottom = top + font;
      texts.push_back((*it)[4]);
      // Not squeezed: at least 0.2 em (an "i") per byte.
      EXPECT_GE(right - left, 0.2 * font * static_cast<double>(texts.back().size())) << texts.back();
    }
    EXPECT_GT(left, plot_right) << (*it)[0];
    EXPECT_LE(right, width) << (*it)[0];
    EXPECT_GE(top, 0.0) << (*it)[0];
    EXPECT_LE(bottom, height) << (*it)[0];
  }
  return texts;
}

std::string without_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

}  // namespace

TEST(LineChart, LegendFitsInsideThePictureWhateverTheNames) {
  const std::vector<std::string> long_names{
      "mean Dice (± std over cases)",  // the Dice-vs-clicks curve's own legend
      "validation Dice of the model trained on the source dataset and tested on the target",
      "Supercalifragilisticexpialidocious_without_any_space_at_all_in_it"};
  for (int width : {320, 760}) {
    for (size_t n : {size_t{1}, size_t{3}, size_t{40}}) {
      SCOPED_TRACE(std::to_string(width) + " px, " + std::to_string(n) + " series");
      io::ChartSpec spec;
      spec.width = width;
      std::string all;
      for (size_t k = 0; k < n; ++k) {
        const std::string name = long_names[k % long_names.size()] + (k < 3 ? "" : " " + std::to_string(k));
        spec.series.push_back({name, {1, 2}, {0.5, 0.6}, {}});
        all += name;
      }
      const std::string svg = io::line_chart_svg(spec);
      check_balanced_xml(svg);
      const auto texts = expect_legend_inside(svg);
      std::string shown;
      for (const auto& t : texts) shown += t;
      // Every name is shown whole, in order (wrapping only moves spaces to line ends).
      EXPECT_EQ(without_spaces(shown), without_spaces(all));
    }
  }
  // The usual short names keep the full-size font on one line each.
  io::ChartSpec spec;
  spec.series = {{"train", {1}, {1}, {}}, {"val", {1}, {1}, {}}};
  const std::string svg = io::line_chart_svg(spec);
  EXPECT_EQ(expect_legend_inside(svg), (std::vector<std::string>{"train", "val"}));
  EXPECT_NE(svg.find("<g class=\"legend\" font-size=\"12.00\">"), std::string::npos);
}

TEST(LineChart, MismatchedLengthsNameTheSeries) {
  io::ChartSpec spec;
  spec.series.push_back({"val dice", {1, 2, 3}, {0.5, 0.6}, {}});
  try {
    io::line_chart_svg(spec);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("val dice"), std::string::npos) << e.what();
  }
  spec.series[0] = {"band", {1, 2}, {0.5, 0.6}, {0.1}};
  EXPECT_THROW(io::line_chart_svg(spec), Error);
  spec.series[0] = {"ok", {1, 2}, {0.5, 0.6}, {}};
  spec.y_min = 1.0;
  spec.y_max = 0.0;
  EXPECT_THROW(io::line_chart_svg(spec), Error);
}

// ---- overlays --------------------------------------------------------------------------

namespace {

// X=16, Y=12, Z=8 voxels, image value = x; ground truth a 5³ cube at [4,9)×[3,8)×[2,7),
// prediction the same cube moved to x ∈ [6,11). Panels are enlarged 32× (256 / Z).
struct OverlayCase {
  torch::Tensor image =
      torch::arange(16, torch::kFloat).view({16, 1, 1}).expand({16, 12, 8}).contiguous();
  torch::Tensor gt = torch::zeros({16, 12, 8}, torch::kBool);
  torch::Tensor pred = torch::zeros({16, 12, 8}, torch::kUInt8);
  std::vector<interaction::Click> clicks{{{12, 9, 4}, 1}, {{2, 5, 6}, 0}, {{7, 6, 5}, 1}};
  data::Index3 center{6, 5, 4};
  OverlayCase() {
    using torch::indexing::Slice;
    gt.index_put_({Slice(4, 9), Slice(3, 8), Slice(2, 7)}, true);
    pred.index_put_({Slice(6, 11), Slice(3, 8), Slice(2, 7)}, 1);
  }
};

constexpr int64_t kS = 32;                   // enlargement
constexpr int64_t kCoronal = 16 * kS + 4;    // first column of each panel
constexpr int64_t kSagittal = 2 * kCoronal;
// Centre pixel of voxel (u, v) in a panel of U×V voxels: +u to the left, +v up.
int64_t col_of(int64_t u, int64_t U) { return (U - 1 - u) * kS + kS / 2; }
int64_t row_of(int64_t v, int64_t V) { return (V - 1 - v) * kS + kS / 2; }

const std::array<int, 3> kGreen{0, 255, 0}, kRed{255, 0, 0}, kYellow{255, 255, 0},
    kCyan{0, 255, 255}, kGap{32, 32, 32};

}  // namespace

TEST(Overlay, PanelsOrientationContoursAndClicks) {
  const OverlayCase c;
  const auto rgb = eval::render_overlay(c.image, c.gt, c.pred, c.clicks, c.center);
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{12 * kS, (16 + 16 + 12) * kS + 8, 3}));

  // Axial (XY at z=4): +x on the viewer's left, so the bright end (x=15) is at the left.
  EXPECT_EQ(pixel(rgb, row_of(0, 12), col_of(15, 16)), (std::array<int, 3>{255, 255, 255}));
  EXPECT_EQ(pixel(rgb, row_of(0, 12), col_of(0, 16)), (std::array<int, 3>{0, 0, 0}));
  // Window [p1, p99] = [0, 15] (each x fills 1/16 of the volume): x=5 is grey 85.
  EXPECT_EQ(pixel(rgb, row_of(5, 12), col_of(5, 16)), (std::array<int, 3>{85, 85, 85}));
  EXPECT_EQ(pixel(rgb, row_of(5, 12), col_of(4, 16)), kGreen);   // gt edge only
  EXPECT_EQ(pixel(rgb, row_of(5, 12), col_of(8, 16)), kGreen);   // gt edge inside pred
  EXPECT_EQ(pixel(rgb, row_of(5, 12), col_of(6, 16)), kRed);     // pred edge over gt
  EXPECT_EQ(pixel(rgb, row_of(5, 12), col_of(10, 16)), kRed);
  EXPECT_EQ(pixel(rgb, row_of(7, 12), col_of(5, 16)), kGreen);   // gt's +y edge (top)
  EXPECT_NE(pixel(rgb, row_of(8, 12), col_of(5, 16)), kGreen);   // just outside it
  EXPECT_EQ(pixel(rgb, row_of(9, 12), col_of(12, 16)), kYellow);  // fg click in this slice
  EXPECT_EQ(pixel(rgb, row_of(6, 12), col_of(7, 16)), kYellow);   // fg click one slice off
  EXPECT_NE(pixel(rgb, row_of(5, 12), col_of(2, 16)), kCyan);     // bg click two slices off

  // Coronal (XZ at y=5): +z up, 8 voxels high; below it the canvas background.
  EXPECT_EQ(pixel(rgb, row_of(6, 8), kCoronal + col_of(5, 16)), kGreen);  // top face z=6
  EXPECT_EQ(pixel(rgb, row_of(2, 8), kCoronal + col_of(5, 16)), kGreen);  // bottom face z=2
  EXPECT_NE(pixel(rgb, row_of(7, 8), kCoronal + col_of(5, 16)), kGreen);
  EXPECT_EQ(pixel(rgb, row_of(6, 8), kCoronal + col_of(2, 16)), kCyan);   // bg click at y=5
  EXPECT_EQ(pixel(rgb, row_of(5, 8), kCoronal + col_of(7, 16)), kYellow);
  EXPECT_EQ(pixel(rgb, 10 * kS, kCoronal + col_of(5, 16)), kGap);

  // Sagittal (YZ at x=6): +y (anterior) on the viewer's left, +z up; x=6 is both the gt's
  // inside and the prediction's face, so the whole pred square is red-outlined.
  EXPECT_EQ(pixel(rgb, row_of(5, 8), kSagittal + col_of(6, 12)), kYellow);
  EXPECT_EQ(pixel(rgb, row_of(4, 8), kSagittal + col_of(3, 12)), kRed);
  EXPECT_EQ(pixel(rgb, row_of(4, 8), kSagittal + col_of(7, 12)), kRed);
  EXPECT_EQ(pixel(rgb, row_of(4, 8), kSagittal + col_of(9, 12)),
            (std::array<int, 3>{102, 102, 102}));  // outside both masks: grey of x=6

  // The gaps between panels.
  EXPECT_EQ(pixel(rgb, 5, 16 * kS + 1), kGap);
  EXPECT_EQ(pixel(rgb, 5, kSagittal - 2), kGap);

  // The PNG holds exactly these pixels.
  const std::string path = test::temp_dir("overlay") + "/case.png";
  eval::render_overlay_png(path, c.image, c.gt, c.pred, c.clicks, c.center);
  EXPECT_TRUE(torch::equal(decode_png(io::read_file(path)), rgb));
}

TEST(Overlay, MasksAreOptionalAndNonFiniteVoxelsAreBlack) {
  OverlayCase c;
  c.image[15][0][4] = std::nanf("");
  const auto rgb = eval::render_overlay(c.image, torch::Tensor(), torch::Tensor(), {}, c.center);
  EXPECT_EQ(pixel(rgb, row_of(0, 12), col_of(15, 16)), (std::array<int, 3>{0, 0, 0}));
  EXPECT_EQ(pixel(rgb, row_of(1, 12), col_of(15, 16)), (std::array<int, 3>{255, 255, 255}));
  // No contours anywhere: every pixel is grey or background.
  EXPECT_TRUE(torch::equal(rgb.select(2, 0), rgb.select(2, 1)));
  EXPECT_TRUE(torch::equal(rgb.select(2, 1), rgb.select(2, 2)));
}

TEST(Overlay, BadInputsThrow) {
  const OverlayCase c;
  EXPECT_THROW(eval::render_overlay(c.image, c.gt.slice(0, 0, 8), c.pred, {}, c.center), Error);
  EXPECT_THROW(eval::render_overlay(c.image[0], c.gt, c.pred, {}, c.center), Error);
  EXPECT_THROW(eval::render_overlay(c.image, c.gt, c.pred, {}, {16, 0, 0}), Error);
  EXPECT_THROW(eval::render_overlay(c.image, c.gt, c.pred, {{0, 0, 8, 1}}, c.center), Error);
  EXPECT_THROW(eval::render_overlay(c.image, c.gt, c.pred, {{0, 0, 0, -1}}, c.center), Error);
  const std::string path = test::temp_dir("overlay-bad") + "/case.png";
  try {
    eval::render_overlay_png(path, c.image, c.gt, c.pred, {{0, 0, 0, 2}}, c.center);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("click 0"), std::string::npos) << e.what();
  }
}

// ---- CSV -------------------------------------------------------------------------------

TEST(Csv, RoundTripWithCommasQuotesAndNewlines) {
  const std::string path = test::temp_dir("csv") + "/cases.csv";
  const std::vector<std::string> header{"case", "note, with comma", "dice"};
  const std::vector<std::vector<std::string>> rows{
      {"a", "say \"hi\"", io::format_number(0.91234567)},
      {"b", "two\nlines", io::format_number(std::nan(""))},
      {"c,d", "", io::format_number(-INFINITY)},
      {"\"", "crlf\r\nend", io::format_number(1e-9)},
  };
  io::CsvWriter w(path, header);
  for (const auto& r : rows) w.add_row(r);
  EXPECT_FALSE(std::filesystem::exists(path));  // nothing until close()
  w.close();
  EXPECT_THROW(w.add_row(rows[0]), Error);

  const auto t = io::read_csv(path);
  EXPECT_EQ(t.header, header);
  EXPECT_EQ(t.rows, (std::vector<std::vector<std::string>>{
                        {"a", "say \"hi\"", "0.912346"},
                        {"b", "two\nlines", "nan"},
                        {"c,d", "", "-inf"},
                        {"\"", "crlf\r\nend", "1e-09"},
                    }));
  EXPECT_EQ(t.column("dice"), 2u);
  EXPECT_EQ(t.source, path);
}

TEST(Csv, SingleEmptyFieldSurvivesAndUnclosedWriterWritesNothing) {
  const std::string dir = test::temp_dir("csv-one");
  {
    io::CsvWriter w(dir + "/one.csv", {"name"});
    w.add_row({""});
    w.add_row({"x"});
    w.close();
  }
  EXPECT_EQ(io::read_csv(dir + "/one.csv").rows,
            (std::vector<std::vector<std::string>>{{""}, {"x"}}));
  {
    io::CsvWriter w(dir + "/never.csv", {"a"});
    w.add_row({"1"});
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/never.csv"));
  io::CsvWriter w(dir + "/w.csv", {"a", "b"});
  EXPECT_THROW(w.add_row({"1"}), Error);
  EXPECT_THROW(io::CsvWriter(dir + "/x.csv", {}), Error);
}

TEST(Csv, ParsesCrlfBomAndBlankLines) {
  const auto t = io::parse_csv("\xEF\xBB\xBF" "a,b\r\n1,\"x\r\ny\"\r\n\r\n2,3\r\n", "mem.csv");
  EXPECT_EQ(t.header, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(t.rows, (std::vector<std::vector<std::string>>{{"1", "x\r\ny"}, {"2", "3"}}));
  EXPECT_EQ(io::parse_csv("a,b\n1,", "m").rows,
            (std::vector<std::vector<std::string>>{{"1", ""}}));
}

TEST(Csv, ErrorsNameTheFileAndLine) {
  auto message = [](const std::string& text) {
    try {
      io::parse_csv(text, "runs/a.csv");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // The ragged row starts on line 4: line 2's quoted field spans two lines.
  EXPECT_EQ(message("a,b\n\"1\n2\",3\n4,5,6\n"),
            "runs/a.csv:4: row has 3 fields but the header has 2");
  EXPECT_EQ(message("a,b\n1\n"), "runs/a.csv:2: row has 1 fields but the header has 2");
  EXPECT_EQ(message("a,b\n1,\"open\n"), "runs/a.csv:2: unterminated quoted field");
  EXPECT_EQ(message("a,b\n1,\"x\"y\n"), "runs/a.csv:2: text after a closing quote");
  EXPECT_EQ(message("a,b\n1,x\"y\n"), "runs/a.csv:2: quote inside an unquoted field");
  EXPECT_EQ(message("a,a\n"), "runs/a.csv:1: duplicate column 'a'");
  EXPECT_EQ(message(""), "runs/a.csv: empty CSV file, no header");
  EXPECT_THROW(io::parse_csv("a\n1\n", "t.csv").column("b"), Error);
  EXPECT_THROW(io::read_csv(test::temp_dir("csv-missing") + "/none.csv"), Error);
}
