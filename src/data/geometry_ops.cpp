#include "msam/data/geometry_ops.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "msam/common/error.h"

namespace msam::data {
namespace {

using Mat3 = std::array<double, 9>;  // row-major

// Nearest-neighbour ties (a sample exactly between two voxels, as in even-factor
// downsampling) round up, as ITK's NearestNeighborInterpolateImageFunction does; the
// tolerance keeps float noise in the coordinates from flipping such ties.
constexpr double kTieTolerance = 1e-6;

std::string where(const std::string& source) { return source.empty() ? "volume" : source; }

void require_3d(const at::Tensor& data, const std::string& source) {
  if (!data.defined() || data.dim() != 3) {
    throw file_error(where(source),
                     "expected a 3-D (X, Y, Z) tensor, got " +
                         (data.defined() ? std::to_string(data.dim()) + "-D" : "none"));
  }
}

Index3 shape3(const at::Tensor& data) {
  const auto d = data.dim();
  return {data.size(d - 3), data.size(d - 2), data.size(d - 1)};
}

std::string shape_str(const Index3& s) {
  return "(" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " +
         std::to_string(s[2]) + ")";
}

double determinant(const Mat3& m) {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
         m[2] * (m[3] * m[7] - m[4] * m[6]);
}

Mat3 inverse(const Mat3& m, const std::string& source) {
  const double det = determinant(m);
  if (!(std::abs(det) > 1e-12)) throw file_error(where(source), "singular direction matrix");
  const double k = 1.0 / det;
  return {(m[4] * m[8] - m[5] * m[7]) * k, (m[2] * m[7] - m[1] * m[8]) * k,
          (m[1] * m[5] - m[2] * m[4]) * k, (m[5] * m[6] - m[3] * m[8]) * k,
          (m[0] * m[8] - m[2] * m[6]) * k, (m[2] * m[3] - m[0] * m[5]) * k,
          (m[3] * m[7] - m[4] * m[6]) * k, (m[1] * m[6] - m[0] * m[7]) * k,
          (m[0] * m[4] - m[1] * m[3]) * k};
}

Point3 multiply(const Mat3& m, const Point3& v) {
  return {m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
          m[6] * v[0] + m[7] * v[1] + m[8] * v[2]};
}

// Samples `data` along `dim` at continuous indices `coords`. Samples within half a voxel of
// the grid are clamped to the edge voxel; samples further out become 0.
at::Tensor sample_axis(const at::Tensor& data, int64_t dim, const std::vector<double>& coords,
                       Interp interp) {
  const int64_t n = data.size(dim);
  const auto m = static_cast<int64_t>(coords.size());
  std::vector<int64_t> lower(m), upper(m), outside;
  std::vector<double> weight(m, 0.0);
  for (int64_t k = 0; k < m; ++k) {
    const double c = coords[k];
    if (c < -0.5 - kTieTolerance || c > n - 0.5 + kTieTolerance) outside.push_back(k);
    if (interp == Interp::Nearest) {
      lower[k] = std::clamp<int64_t>(static_cast<int64_t>(std::floor(c + 0.5 + kTieTolerance)),
                                     0, n - 1);
    } else {
      const double clamped = std::clamp(c, 0.0, static_cast<double>(n - 1));
      lower[k] = std::min<int64_t>(static_cast<int64_t>(std::floor(clamped)), n - 1);
      upper[k] = std::min<int64_t>(lower[k] + 1, n - 1);
      weight[k] = clamped - static_cast<double>(lower[k]);
    }
  }
  const auto index_opts = at::TensorOptions().dtype(at::kLong);
  at::Tensor out = data.index_select(dim, at::tensor(lower, index_opts));
  if (interp == Interp::Linear) {
    std::vector<int64_t> view(data.dim(), 1);
    view[dim] = m;
    const auto w = at::tensor(weight, at::TensorOptions().dtype(at::kDouble))
                       .to(data.scalar_type())
                       .view(view);
    out = out * (1 - w) + data.index_select(dim, at::tensor(upper, index_opts)) * w;
  }
  if (!outside.empty()) out.index_fill_(dim, at::tensor(outside, index_opts), 0);
  return out;
}

}  // namespace

// ---- orientation -----------------------------------------------------------------------

Reoriented reorient_to_ras(const Volume& volume) {
  require_3d(volume.data, volume.source);
  const Geometry& g = volume.geometry;
  inverse(g.direction, volume.source);  // rejects a singular matrix

  // Direction columns in RAS: LPS -> RAS negates the first two world coordinates.
  Mat3 ras = g.direction;
  for (int c = 0; c < 3; ++c) {
    ras[c] = -ras[c];
    ras[3 + c] = -ras[3 + c];
  }
  // Greedy closest-canonical assignment: repeatedly pair the world axis and voxel axis
  // with the largest remaining |cosine| (exact for axis-aligned scans, the nearest axis
  // for oblique ones).
  OrientationRecord record;
  std::array<bool, 3> world_used{}, axis_used{};
  for (int step = 0; step < 3; ++step) {
    int best_r = -1, best_c = -1;
    double best = -1.0;
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) {
        if (world_used[r] || axis_used[c]) continue;
        if (std::abs(ras[r * 3 + c]) > best) {
          best = std::abs(ras[r * 3 + c]);
          best_r = r;
          best_c = c;
        }
      }
    }
    world_used[best_r] = axis_used[best_c] = true;
    record.permutation[best_r] = best_c;
    record.flipped[best_r] = ras[best_r * 3 + best_c] < 0;
  }
  record.input_shape = shape3(volume.data);
  record.input_geometry = g;

  const auto& p = record.permutation;
  at::Tensor data = volume.data.permute({p[0], p[1], p[2]});
  std::vector<int64_t> flip_dims;
  for (int i = 0; i < 3; ++i) {
    if (record.flipped[i]) flip_dims.push_back(i);
  }
  if (!flip_dims.empty()) data = data.flip(flip_dims);

  Geometry out;
  Point3 corner{0, 0, 0};  // input index of the new first voxel
  for (int i = 0; i < 3; ++i) {
    const double sign = record.flipped[i] ? -1.0 : 1.0;
    out.spacing[i] = g.spacing[p[i]];
    for (int r = 0; r < 3; ++r) out.direction[r * 3 + i] = sign * g.direction[r * 3 + p[i]];
    if (record.flipped[i]) corner[p[i]] = static_cast<double>(record.input_shape[p[i]] - 1);
  }
  out.origin = voxel_to_world(g, corner);
  return {Volume{data.contiguous(), out, volume.source}, record};
}

Volume undo_reorient(const at::Tensor& ras_data, const OrientationRecord& record) {
  require_3d(ras_data, "reoriented volume");
  const auto& p = record.permutation;
  const Index3 expected{record.input_shape[p[0]], record.input_shape[p[1]],
                        record.input_shape[p[2]]};
  if (shape3(ras_data) != expected) {
    throw Error("undo_reorient: tensor shape " + shape_str(shape3(ras_data)) +
                " does not match the reoriented shape " + shape_str(expected));
  }
  std::vector<int64_t> flip_dims;
  for (int i = 0; i < 3; ++i) {
    if (record.flipped[i]) flip_dims.push_back(i);
  }
  at::Tensor data = flip_dims.empty() ? ras_data : ras_data.flip(flip_dims);
  std::array<int64_t, 3> inverse_perm{};
  for (int i = 0; i < 3; ++i) inverse_perm[p[i]] = i;
  data = data.permute({inverse_perm[0], inverse_perm[1], inverse_perm[2]}).contiguous();
  return Volume{data, record.input_geometry, ""};
}

// ---- resampling ------------------------------------------------------------------------

Volume resample(const Volume& volume, const Point3& target_spacing, Interp interp) {
  require_3d(volume.data, volume.source);
  const Geometry& g = volume.geometry;
  const Index3 n = shape3(volume.data);
  Geometry out = g;
  Index3 shape{};
  Point3 first_center{};  // continuous input index of the new first voxel centre
  for (int i = 0; i < 3; ++i) {
    if (!(target_spacing[i] > 0) || !std::isfinite(target_spacing[i])) {
      throw file_error(where(volume.source),
                       "target spacing must be positive, got " + std::to_string(target_spacing[i]));
    }
    const double ratio = g.spacing[i] / target_spacing[i];
    shape[i] = std::max<int64_t>(1, std::llround(static_cast<double>(n[i]) * ratio));
    out.spacing[i] = target_spacing[i];
    first_center[i] = -0.5 + 0.5 / ratio;  // keeps the outer corner of voxel 0 fixed
  }
  out.origin = voxel_to_world(g, first_center);
  return resample_onto(volume, shape, out, interp);
}

Volume resample_onto(const Volume& volume, const Index3& shape, const Geometry& reference,
                     Interp interp) {
  require_3d(volume.data, volume.source);
  const Geometry& g = volume.geometry;
  for (int k = 0; k < 9; ++k) {
    if (std::abs(g.direction[k] - reference.direction[k]) > 1e-6) {
      throw file_error(where(volume.source),
                       "resample_onto needs the same direction matrix on both grids");
    }
  }
  if (interp == Interp::Linear && !at::isFloatingType(volume.data.scalar_type())) {
    throw file_error(where(volume.source),
                     "linear interpolation of an integer tensor (a label map?); use Nearest");
  }
  // With a shared direction the mapping is separable: input index along axis j is
  // (reference spacing_j · k + q_j) / spacing_j with q = D⁻¹ (reference origin − origin).
  Point3 offset;
  for (int r = 0; r < 3; ++r) offset[r] = reference.origin[r] - g.origin[r];
  const Point3 q = multiply(inverse(g.direction, volume.source), offset);
  at::Tensor data = volume.data;
  for (int j = 0; j < 3; ++j) {
    if (shape[j] < 1) throw file_error(where(volume.source), "resample_onto: empty target shape");
    std::vector<double> coords(shape[j]);
    for (int64_t k = 0; k < shape[j]; ++k) {
      coords[k] = (reference.spacing[j] * static_cast<double>(k) + q[j]) / g.spacing[j];
    }
    data = sample_axis(data, j, coords, interp);
  }
  return Volume{data.contiguous(), reference, volume.source};
}

// ---- voxel <-> world -------------------------------------------------------------------

Point3 voxel_to_world(const Geometry& g, const Point3& index) {
  const Point3 scaled{index[0] * g.spacing[0], index[1] * g.spacing[1], index[2] * g.spacing[2]};
  const Point3 d = multiply(g.direction, scaled);
  return {g.origin[0] + d[0], g.origin[1] + d[1], g.origin[2] + d[2]};
}

Point3 world_to_voxel(const Geometry& g, const Point3& point) {
  const Point3 offset{point[0] - g.origin[0], point[1] - g.origin[1], point[2] - g.origin[2]};
  const Point3 d = multiply(inverse(g.direction, "geometry"), offset);
  return {d[0] / g.spacing[0], d[1] / g.spacing[1], d[2] / g.spacing[2]};
}

Point3 ras_from_lps(const Point3& p) { return {-p[0], -p[1], p[2]}; }
Point3 lps_from_ras(const Point3& p) { return {-p[0], -p[1], p[2]}; }

// ---- regions of interest ---------------------------------------------------------------

namespace {

// Copies the overlap of the ROI box and the full grid from `from` to `to`; `crop_is_from`
// says which of the two tensors is the crop.
void copy_overlap(const at::Tensor& from, const at::Tensor& to, const RoiRecord& r,
                  bool crop_is_from) {
  at::Tensor src = from, dst = to;
  for (int i = 0; i < 3; ++i) {
    const int64_t lo = std::max<int64_t>(r.start[i], 0);
    const int64_t hi = std::min<int64_t>(r.start[i] + r.size[i], r.full_shape[i]);
    if (hi <= lo) return;
    const int64_t dim = from.dim() - 3 + i;
    const int64_t crop_lo = lo - r.start[i];
    src = src.narrow(dim, crop_is_from ? crop_lo : lo, hi - lo);
    dst = dst.narrow(dim, crop_is_from ? lo : crop_lo, hi - lo);
  }
  dst.copy_(src);
}

}  // namespace

Roi extract_roi(const at::Tensor& data, const Index3& center, const Index3& size,
                double pad_value) {
  if (!data.defined() || data.dim() < 3) throw Error("extract_roi: tensor must have >= 3 dims");
  RoiRecord r;
  r.size = size;
  r.full_shape = shape3(data);
  for (int i = 0; i < 3; ++i) {
    if (size[i] <= 0) throw Error("extract_roi: ROI size must be positive, got " + shape_str(size));
    if (center[i] < 0 || center[i] >= r.full_shape[i]) {
      throw Error("extract_roi: centre " + shape_str(center) + " lies outside the grid " +
                  shape_str(r.full_shape));
    }
    r.start[i] = center[i] - size[i] / 2;
  }
  std::vector<int64_t> out_shape(data.sizes().begin(), data.sizes().end() - 3);
  out_shape.insert(out_shape.end(), size.begin(), size.end());
  at::Tensor crop = at::full(out_shape, pad_value, data.options());
  copy_overlap(data, crop, r, false);
  return {crop, r};
}

at::Tensor paste_roi(const at::Tensor& crop, const RoiRecord& record,
                     const at::Tensor& background) {
  if (!crop.defined() || crop.dim() < 3 || shape3(crop) != record.size) {
    throw Error("paste_roi: crop shape does not match the ROI size " + shape_str(record.size));
  }
  std::vector<int64_t> full_shape(crop.sizes().begin(), crop.sizes().end() - 3);
  full_shape.insert(full_shape.end(), record.full_shape.begin(), record.full_shape.end());
  at::Tensor full;
  if (background.defined()) {
    if (background.sizes() != at::IntArrayRef(full_shape)) {
      throw Error("paste_roi: background shape does not match the full grid " +
                  shape_str(record.full_shape));
    }
    full = background.clone();
  } else {
    full = at::zeros(full_shape, crop.options());
  }
  copy_overlap(crop, full, record, true);
  return full;
}

Geometry roi_geometry(const Geometry& full, const RoiRecord& record) {
  Geometry g = full;
  g.origin = voxel_to_world(full, {static_cast<double>(record.start[0]),
                                   static_cast<double>(record.start[1]),
                                   static_cast<double>(record.start[2])});
  return g;
}

}  // namespace msam::data
