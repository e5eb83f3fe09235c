// Report output: SVG line charts (training curves, Dice vs clicks), three-plane overlay PNGs
// of a case, and CSV tables (written atomically, read back for comparisons).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "msam/data/geometry_ops.h"
#include "msam/interaction/click.h"

namespace msam::eval {

// ---- line charts ---------------------------------------------------------------------

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

// ---- overlays ------------------------------------------------------------------------

// Three panels side by side, each a slice through `center` of the (X, Y, Z) arrays:
// axial (XY plane at z), coronal (XZ at y), sagittal (YZ at x). The arrays are RAS+
// (docs/design.md §5), shown in radiological convention: +y (anterior) and +z (superior) point
// up; +x (the patient's right) is on the viewer's left in the axial and coronal panels and
// +y (anterior) on the viewer's left in the sagittal panel.
// The image is grey, windowed to its 1st-99th percentile over the whole volume; the
// ground-truth contour is green and the prediction contour red (drawn over green), where a
// contour is the 2D mask XOR its erosion (4-neighbourhood, outside the slice counts as
// background). Clicks within 1 voxel of a panel's slice are filled squares, foreground
// yellow and background cyan. Panels are enlarged by one integer factor (nearest
// neighbour) so that each is at least 256 px high, and separated by a 4 px dark gap.
// Voxel spacing is ignored: a voxel is a square pixel.
// `gt` and `pred` are masks of the image's shape (any dtype, nonzero = inside); either may
// be undefined to leave that contour out. Bad shapes or indices throw msam::Error.
// Returns (H, W, 3) uint8, row 0 at the top.
at::Tensor render_overlay(const at::Tensor& image, const at::Tensor& gt, const at::Tensor& pred,
                          const std::vector<interaction::Click>& clicks,
                          const data::Index3& center);
void render_overlay_png(const std::string& path, const at::Tensor& image, const at::Tensor& gt,
                        const at::Tensor& pred,
                        const std::vector<interaction::Click>& clicks,
                        const data::Index3& center);

// ---- CSV -----------------------------------------------------------------------------

// RFC 4180 fields: a field holding a comma, quote, CR or LF is quoted with quotes doubled.
std::string csv_escape(const std::string& field);
// Six significant digits, "nan" / "inf" / "-inf" for non-finite values.
std::string format_number(double value);

// Collects a header and rows in memory and writes them atomically on close(), so a run that
// fails half-way leaves no partial table (a writer destroyed unclosed writes nothing).
class CsvWriter {
 public:
  CsvWriter(std::string path, std::vector<std::string> header);
  // Throws msam::Error (naming the file) if the row width differs from the header's, or
  // after close().
  void add_row(const std::vector<std::string>& fields);
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  size_t width_;
  std::string text_;
  bool closed_ = false;
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // each as wide as header
  std::string source;                          // file it was read from, for errors

  // Position of the named column; throws msam::Error naming the file if absent.
  size_t column(const std::string& name) const;
};

// Parses RFC 4180 text (LF or CRLF, quoted fields may span lines, a leading UTF-8 BOM and
// blank lines are skipped). Errors name the source and the line: a row wider or narrower
// than the header, an unterminated quote, text after a closing quote, no header.
CsvTable parse_csv(const std::string& text, const std::string& source);
CsvTable read_csv(const std::string& path);

}  // namespace msam::eval
