#include "msam/eval/overlay.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "msam/common/error.h"
#include "msam/common/shape.h"
#include "msam/io/png.h"

namespace msam::eval {
namespace {

// ---- overlays ------------------------------------------------------------------------

constexpr int64_t kMinPanelHeight = 256;
constexpr int64_t kPanelGap = 4;
constexpr std::array<uint8_t, 3> kBackground{32, 32, 32};
constexpr std::array<uint8_t, 3> kGtColour{0, 255, 0};
constexpr std::array<uint8_t, 3> kPredColour{255, 0, 0};
constexpr std::array<uint8_t, 3> kForegroundClick{255, 255, 0};
constexpr std::array<uint8_t, 3> kBackgroundClick{0, 255, 255};


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

}  // namespace msam::eval
