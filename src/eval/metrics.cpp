#include "msam/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "msam/common/error.h"
#include "msam/common/parallel.h"
#include "msam/eval/metric_table.h"

namespace msam::eval {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr uint8_t kPredSurface = 1, kGtSurface = 2;

// Python's max(a, b): b only when b > a, so max(nan, x) is nan and max(x, nan) is x.
double python_max(double a, double b) { return b > a ? b : a; }

struct Box {
  Shape3 lo{0, 0, 0}, hi{-1, -1, -1};  // inclusive; empty while hi < lo
  bool empty() const { return hi[0] < lo[0]; }
  int64_t extent(int a) const { return hi[a] - lo[a] + 1; }
};

struct Counts {
  int64_t pred = 0, gt = 0, both = 0;
  Box box;
};

// Voxel counts and the bounding box of pred ∪ gt, in parallel over axis-0 slices.
Counts count_voxels(const uint8_t* pred, const uint8_t* gt, const Shape3& shape, int num_threads) {
  const int threads = resolve_threads(num_threads, shape[0]);
  std::vector<Counts> partial(threads);
  const int64_t slice = shape[1] * shape[2];
  parallel_for(threads, threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      Counts c;
      c.box.lo = shape;
      for (int64_t i = shape[0] * t / threads; i < shape[0] * (t + 1) / threads; ++i)
        for (int64_t j = 0; j < shape[1]; ++j) {
          const int64_t row = i * slice + j * shape[2];
          for (int64_t k = 0; k < shape[2]; ++k) {
            const bool p = pred[row + k] != 0, g = gt[row + k] != 0;
            c.pred += p;
            c.gt += g;
            c.both += p && g;
            if (p || g) {
              const Shape3 at{i, j, k};
              for (int a = 0; a < 3; ++a) {
                c.box.lo[a] = std::min(c.box.lo[a], at[a]);
                c.box.hi[a] = std::max(c.box.hi[a], at[a]);
              }
            }
          }
        }
      partial[t] = c;
    }
  });
  Counts total;
  total.box.lo = shape;
  for (const auto& c : partial) {
    total.pred += c.pred;
    total.gt += c.gt;
    total.both += c.both;
    for (int a = 0; a < 3; ++a) {
      total.box.lo[a] = std::min(total.box.lo[a], c.box.lo[a]);
      total.box.hi[a] = std::max(total.box.hi[a], c.box.hi[a]);
    }
  }
  return total;
}

// Surface flags on the crop `box`: a foreground voxel is on the surface when one of its six
// neighbours is background or outside the volume (erosion with border value 0). The box holds
// every foreground voxel, so neighbours outside it are background either way.
std::vector<uint8_t> surface_flags(const uint8_t* pred, const uint8_t* gt, const Shape3& shape,
                                   const Box& box, int num_threads) {
  const Shape3 crop{box.extent(0), box.extent(1), box.extent(2)};
  std::vector<uint8_t> flags(crop[0] * crop[1] * crop[2], 0);
  const int64_t s0 = shape[1] * shape[2], s1 = shape[2];
  auto on_surface = [&](const uint8_t* m, int64_t i, int64_t j, int64_t k) {
    const int64_t at = i * s0 + j * s1 + k;
    if (!m[at]) return false;
    return i == box.lo[0] || i == box.hi[0] || !m[at - s0] || !m[at + s0] ||  //
           j == box.lo[1] || j == box.hi[1] || !m[at - s1] || !m[at + s1] ||  //
           k == box.lo[2] || k == box.hi[2] || !m[at - 1] || !m[at + 1];
  };
  parallel_for(crop[0], num_threads, [&](int64_t c0, int64_t c1) {
    for (int64_t ci = c0; ci < c1; ++ci)
      for (int64_t cj = 0; cj < crop[1]; ++cj)
        for (int64_t ck = 0; ck < crop[2]; ++ck) {
          const int64_t i = box.lo[0] + ci, j = box.lo[1] + cj, k = box.lo[2] + ck;
          flags[(ci * crop[1] + cj) * crop[2] + ck] =
              (on_surface(pred, i, j, k) ? kPredSurface : 0) |
              (on_surface(gt, i, j, k) ? kGtSurface : 0);
        }
  });
  return flags;
}

// Distances (mm) from the voxels flagged `from` to the nearest voxel flagged `to`.
std::vector<double> directed_distances(const std::vector<uint8_t>& flags, const Shape3& crop,
                                       uint8_t from, uint8_t to, const Spacing3& spacing,
                                       int num_threads, std::vector<double>& scratch) {
  scratch.resize(flags.size());
  for (size_t i = 0; i < flags.size(); ++i) scratch[i] = (flags[i] & to) ? 0.0 : kInf;
  squared_distance_transform_inplace(scratch.data(), crop, spacing, num_threads);
  std::vector<double> out;
  for (size_t i = 0; i < flags.size(); ++i)
    if (flags[i] & from) out.push_back(std::sqrt(scratch[i]));
  return out;
}

double max_or_nan(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double m = v[0];
  for (double x : v) m = python_max(m, x);
  return m;
}

void check_inputs(const at::Tensor& pred, const at::Tensor& gt, const MetricOptions& options) {
  if (pred.dim() != 3 || gt.dim() != 3 || !pred.sizes().equals(gt.sizes())) {
    std::ostringstream msg;
    msg << "metrics: prediction and ground truth must be 3D masks of the same shape, got "
        << pred.sizes() << " and " << gt.sizes();
    throw Error(msg.str());
  }
  for (double s : options.spacing)
    if (!(s > 0.0) || !std::isfinite(s)) {
      std::ostringstream msg;
      msg << "metrics: voxel spacing must be positive and finite, got (" << options.spacing[0]
          << ", " << options.spacing[1] << ", " << options.spacing[2] << ")";
      throw Error(msg.str());
    }
  if (!(options.nsd_tolerance_mm >= 0.0) || !std::isfinite(options.nsd_tolerance_mm))
    throw Error("metrics: the NSD tolerance must be a finite number of mm >= 0, got " +
                std::to_string(options.nsd_tolerance_mm));
}

// The mask as one byte per voxel, nonzero = foreground. Bool and uint8 tensors on the CPU are
// read in place (converting a 512×512×300 volume costs more than the metrics themselves).
at::Tensor mask_bytes(const at::Tensor& mask) {
  auto m = mask.to(at::kCPU);
  if (m.scalar_type() == at::kBool) m = m.view(at::kByte);
  if (m.scalar_type() != at::kByte) m = m.ne(0).view(at::kByte);
  return m.contiguous();
}

}  // namespace

double linear_percentile(std::vector<double>& values, double q) {
  const int64_t n = static_cast<int64_t>(values.size());
  if (n == 0) return kNaN;
  // numpy: virtual index (n − 1)·q/100, then _lerp(below, above, gamma), which interpolates
  // from the nearer end (so inf − inf = NaN for an all-inf list, as numpy gives).
  const double virtual_index = static_cast<double>(n - 1) * (q / 100.0);
  int64_t below = static_cast<int64_t>(std::floor(virtual_index));
  below = std::clamp<int64_t>(below, 0, n - 1);
  const int64_t above = std::min(below + 1, n - 1);
  const double gamma = virtual_index - static_cast<double>(below);
  std::nth_element(values.begin(), values.begin() + below, values.end());
  const double a = values[below];
  const double b =
      above == below ? a : *std::min_element(values.begin() + below + 1, values.end());
  const double diff = b - a;
  return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
}

CaseMetrics compute_case_metrics(const at::Tensor& pred, const at::Tensor& gt,
                                 const MetricOptions& options) {
  check_inputs(pred, gt, options);
  const auto p = mask_bytes(pred), g = mask_bytes(gt);
  const Shape3 shape{p.size(0), p.size(1), p.size(2)};
  const uint8_t* pp = p.data_ptr<uint8_t>();
  const uint8_t* gp = g.data_ptr<uint8_t>();

  CaseMetrics m;
  const Counts counts = count_voxels(pp, gp, shape, options.num_threads);
  m.pred_voxels = counts.pred;
  m.gt_voxels = counts.gt;
  const double total = static_cast<double>(counts.pred + counts.gt);
  m.dice = total > 0 ? 2.0 * counts.both / total : kNaN;
  m.iou = total > 0 ? counts.both / (total - counts.both) : kNaN;

  std::vector<double> d_pg, d_gp;
  if (!counts.box.empty()) {
    const Shape3 crop{counts.box.extent(0), counts.box.extent(1), counts.box.extent(2)};
    const auto flags = surface_flags(pp, gp, shape, counts.box, options.num_threads);
    for (uint8_t f : flags) {
      m.pred_surface_voxels += (f & kPredSurface) != 0;
      m.gt_surface_voxels += (f & kGtSurface) != 0;
    }
    if (m.pred_surface_voxels > 0 && m.gt_surface_voxels > 0) {
      std::vector<double> scratch;
      d_pg = directed_distances(flags, crop, kPredSurface, kGtSurface, options.spacing,
                                options.num_threads, scratch);
      d_gp = directed_distances(flags, crop, kGtSurface, kPredSurface, options.spacing,
                                options.num_threads, scratch);
    } else {
      // MONAI get_surface_distance with one empty surface: +inf once per voxel of the other.
      const int64_t n = std::max(m.pred_surface_voxels, m.gt_surface_voxels);
      d_pg.assign(n, kInf);
      d_gp.assign(n, kInf);
    }
  }

  m.hd_pred_to_gt = max_or_nan(d_pg);
  m.hd_gt_to_pred = max_or_nan(d_gp);
  m.hd = python_max(m.hd_pred_to_gt, m.hd_gt_to_pred);

  const double tol = options.nsd_tolerance_mm;
  const auto within = [tol](const std::vector<double>& d) {
    return std::count_if(d.begin(), d.end(), [tol](double x) { return x <= tol; });
  };
  const size_t n_all = d_pg.size() + d_gp.size();
  m.nsd = n_all > 0 ? static_cast<double>(within(d_pg) + within(d_gp)) / n_all : kNaN;
  double sum = 0.0;
  for (double x : d_pg) sum += x;
  for (double x : d_gp) sum += x;
  m.assd = n_all > 0 ? sum / n_all : kNaN;

  m.hd95_pred_to_gt = linear_percentile(d_pg, 95.0);
  m.hd95_gt_to_pred = linear_percentile(d_gp, 95.0);
  m.hd95 = python_max(m.hd95_pred_to_gt, m.hd95_gt_to_pred);
  return m;
}

double dice_score(const at::Tensor& pred, const at::Tensor& gt) {
  const auto p = pred.to(at::kBool), g = gt.to(at::kBool);
  const double total = p.sum().item<double>() + g.sum().item<double>();
  if (total == 0) return kNaN;
  return 2.0 * (p & g).sum().item<double>() / total;
}

std::vector<std::pair<std::string, double>> metric_values(const CaseMetrics& m) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& info : metric_table()) out.emplace_back(info.name, m.*info.value);
  return out;
}

MetricSummary summarize(const std::vector<double>& values) {
  MetricSummary s;
  s.n_cases = static_cast<int64_t>(values.size());
  std::vector<double> finite;
  for (double x : values) {
    if (std::isnan(x))
      ++s.n_nan;
    else if (std::isinf(x))
      ++(x > 0 ? s.n_pos_inf : s.n_neg_inf);
    else
      finite.push_back(x);
  }
  s.n_finite = static_cast<int64_t>(finite.size());
  if (finite.empty()) {
    s.mean = s.std = s.median = s.min = s.max = kNaN;
    return s;
  }
  double sum = 0.0;
  for (double x : finite) sum += x;
  s.mean = sum / s.n_finite;
  double ss = 0.0;
  for (double x : finite) ss += (x - s.mean) * (x - s.mean);
  s.std = s.n_finite > 1 ? std::sqrt(ss / (s.n_finite - 1)) : kNaN;
  s.min = *std::min_element(finite.begin(), finite.end());
  s.max = *std::max_element(finite.begin(), finite.end());
  s.median = linear_percentile(finite, 50.0);
  return s;
}

std::vector<std::pair<std::string, MetricSummary>> summarize(const std::vector<CaseMetrics>& cases) {
  const auto names = metric_values(CaseMetrics{});
  std::vector<std::vector<double>> columns(names.size());
  for (const auto& c : cases) {
    const auto values = metric_values(c);
    for (size_t i = 0; i < values.size(); ++i) columns[i].push_back(values[i].second);
  }
  std::vector<std::pair<std::string, MetricSummary>> out;
  for (size_t i = 0; i < names.size(); ++i) out.emplace_back(names[i].first, summarize(columns[i]));
  return out;
}

}  // namespace msam::eval
