#include "msam/data/geometry_ops.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "msam/common/error.h"
#include "msam/common/shape.h"

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

// Where each output voxel along one axis reads the input: voxel `lower` (Nearest), or
// `lower` and `upper` mixed with `weight` on `upper` (Linear). Samples within half a voxel of
// the grid are clamped to the edge voxel; those further out (`outside`, output positions)
// become 0.
struct AxisSamples {
  std::vector<int64_t> lower, upper, outside;
  std::vector<double> weight;
  int64_t first_read = 0, last_read = 0;  // the input voxels read, inclusive
};

AxisSamples axis_samples(int64_t n, const std::vector<double>& coords, Interp interp) {
  const auto m = static_cast<int64_t>(coords.size());
  AxisSamples s;
  s.lower.resize(m);
  s.upper.resize(m);
  s.weight.assign(m, 0.0);
  for (int64_t k = 0; k < m; ++k) {
    const double c = coords[k];
    if (c < -0.5 - kTieTolerance || c > n - 0.5 + kTieTolerance) s.outside.push_back(k);
    if (interp == Interp::Nearest) {
      s.lower[k] = std::clamp<int64_t>(static_cast<int64_t>(std::floor(c + 0.5 + kTieTolerance)),
                                       0, n - 1);
      s.upper[k] = s.lower[k];
    } else {
      const double clamped = std::clamp(c, 0.0, static_cast<double>(n - 1));
      s.lower[k] = std::min<int64_t>(static_cast<int64_t>(std::floor(clamped)), n - 1);
      s.upper[k] = std::min<int64_t>(s.lower[k] + 1, n - 1);
      s.weight[k] = clamped - static_cast<double>(s.lower[k]);
    }
  }
  s.first_read = *std::min_element(s.lower.begin(), s.lower.end());
  s.last_read = *std::max_element(s.upper.begin(), s.upper.end());
  return s;
}

// Samples `data` along `dim`, where `data` holds the input voxels from `first` on.
at::Tensor apply_samples(const at::Tensor& data, int64_t dim, const AxisSamples& s,
                         int64_t first, Interp interp) {
  const auto index_opts = at::TensorOptions().dtype(at::kLong);
  const auto local = [&](const std::vector<int64_t>& index) {
    return at::tensor(index, index_opts) - first;
  };
  at::Tensor out = data.index_select(dim, local(s.lower));
  if (interp == Interp::Linear) {
    std::vector<int64_t> view(data.dim(), 1);
    view[dim] = static_cast<int64_t>(s.weight.size());
    const auto w = at::tensor(s.weight, at::TensorOptions().dtype(at::kDouble))
                       .to(data.scalar_type())
                       .view(view);
    out = out * (1 - w) + data.index_select(dim, local(s.upper)) * w;
  }
  if (!s.outside.empty()) out.index_fill_(dim, at::tensor(s.outside, index_opts), 0);
  return out;
}

void check_box(const Index3& start, const Index3& size, const Index3& shape, const char* what) {
  for (int i = 0; i < 3; ++i) {
    if (size[i] < 1 || start[i] < 0 || start[i] + size[i] > shape[i]) {
      throw Error(std::string(what) + ": box from " + shape_str(start) + " of size " +
                  shape_str(size) + " is not inside the grid " + shape_str(shape));
    }
  }
}

}  // namespace

// ---- orientation -----------------------------------------------------------------------

OrientationRecord ras_orientation(const Index3& shape, const Geometry& g,
                                  const std::string& source) {
  inverse(g.direction, source);  // rejects a singular matrix

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
  record.input_shape = shape;
  record.input_geometry = g;
  return record;
}

Index3 ras_shape(const OrientationRecord& record) {
  const auto& p = record.permutation;
  return {record.input_shape[p[0]], record.input_shape[p[1]], record.input_shape[p[2]]};
}

Geometry ras_geometry(const OrientationRecord& record) {
  const Geometry& g = record.input_geometry;
  const auto& p = record.permutation;
  Geometry out;
  Point3 corner{0, 0, 0};  // input index of the new first voxel
  for (int i = 0; i < 3; ++i) {
    const double sign = record.flipped[i] ? -1.0 : 1.0;
    out.spacing[i] = g.spacing[p[i]];
    for (int r = 0; r < 3; ++r) out.direction[r * 3 + i] = sign * g.direction[r * 3 + p[i]];
    if (record.flipped[i]) corner[p[i]] = static_cast<double>(record.input_shape[p[i]] - 1);
  }
  out.origin = voxel_to_world(g, corner);
  return out;
}

at::Tensor ras_region(const at::Tensor& data, const OrientationRecord& record,
                      const Index3& start, const Index3& size) {
  require_3d(data, "volume");
  if (shape3(data) != record.input_shape) {
    throw Error("ras_region: tensor shape " + shape_str(shape3(data)) +
                " does not match the orientation record's " + shape_str(record.input_shape));
  }
  const Index3 ras = ras_shape(record);
  check_box(start, size, ras, "ras_region");
  const auto& p = record.permutation;
  at::Tensor cut = data;
  std::vector<int64_t> flip_dims;
  for (int i = 0; i < 3; ++i) {
    // A flipped axis runs backwards: RAS voxel r is input voxel n - 1 - r.
    const int64_t first = record.flipped[i] ? ras[i] - start[i] - size[i] : start[i];
    cut = cut.narrow(p[i], first, size[i]);
    if (record.flipped[i]) flip_dims.push_back(i);
  }
  cut = cut.permute({p[0], p[1], p[2]});
  if (!flip_dims.empty()) cut = cut.flip(flip_dims);
  return cut.contiguous();
}

Reoriented reorient_to_ras(const Volume& volume) {
  require_3d(volume.data, volume.source);
  const OrientationRecord record =
      ras_orientation(shape3(volume.data), volume.geometry, volume.source);
  const at::Tensor data = ras_region(volume.data, record, {0, 0, 0}, ras_shape(record));
  return {Volume{data, ras_geometry(record), volume.source}, record};
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

Grid resampled_grid(const Index3& n, const Geometry& g, const Point3& target_spacing,
                    const std::string& source) {
  Grid out{{0, 0, 0}, g};
  Point3 first_center{};  // continuous input index of the new first voxel centre
  for (int i = 0; i < 3; ++i) {
    if (!(target_spacing[i] > 0) || !std::isfinite(target_spacing[i])) {
      throw file_error(where(source),
                       "target spacing must be positive, got " + std::to_string(target_spacing[i]));
    }
    const double ratio = g.spacing[i] / target_spacing[i];
    out.shape[i] = std::max<int64_t>(1, std::llround(static_cast<double>(n[i]) * ratio));
    out.geometry.spacing[i] = target_spacing[i];
    first_center[i] = -0.5 + 0.5 / ratio;  // keeps the outer corner of voxel 0 fixed
  }
  out.geometry.origin = voxel_to_world(g, first_center);
  return out;
}

Volume resample(const Volume& volume, const Point3& target_spacing, Interp interp) {
  require_3d(volume.data, volume.source);
  const Grid grid =
      resampled_grid(shape3(volume.data), volume.geometry, target_spacing, volume.source);
  return resample_onto(volume, grid.shape, grid.geometry, interp);
}

Volume resample_onto(const Volume& volume, const Index3& shape, const Geometry& reference,
                     Interp interp) {
  require_3d(volume.data, volume.source);
  const auto whole = [&](const Index3& start, const Index3& size) {
    return box_view(volume.data, start, size);
  };
  const at::Tensor data = resample_box({shape3(volume.data), volume.geometry}, whole,
                                       {shape, reference}, interp, {0, 0, 0}, shape,
                                       volume.source);
  return Volume{data.contiguous(), reference, volume.source};
}

at::Tensor resample_box(const Grid& input, const RegionReader& read, const Grid& target,
                        Interp interp, const Index3& start, const Index3& size,
                        const std::string& source) {
  const Geometry& g = input.geometry;
  const Geometry& reference = target.geometry;
  for (int k = 0; k < 9; ++k) {
    if (std::abs(g.direction[k] - reference.direction[k]) > 1e-6) {
      throw file_error(where(source), "resample_onto needs the same direction matrix on both grids");
    }
  }
  for (int j = 0; j < 3; ++j) {
    if (target.shape[j] < 1) throw file_error(where(source), "resample_onto: empty target shape");
  }
  check_box(start, size, target.shape, "resample_box");
  // With a shared direction the mapping is separable: input index along axis j is
  // (reference spacing_j · k + q_j) / spacing_j with q = D⁻¹ (reference origin − origin).
  Point3 offset;
  for (int r = 0; r < 3; ++r) offset[r] = reference.origin[r] - g.origin[r];
  const Point3 q = multiply(inverse(g.direction, source), offset);
  std::array<AxisSamples, 3> samples;
  Index3 read_start, read_size;
  for (int j = 0; j < 3; ++j) {
    std::vector<double> coords(size[j]);
    for (int64_t i = 0; i < size[j]; ++i) {
      const auto k = static_cast<double>(start[j] + i);
      coords[i] = (reference.spacing[j] * k + q[j]) / g.spacing[j];
    }
    samples[j] = axis_samples(input.shape[j], coords, interp);
    read_start[j] = samples[j].first_read;
    read_size[j] = samples[j].last_read - samples[j].first_read + 1;
  }
  at::Tensor data = read(read_start, read_size);
  if (interp == Interp::Linear && !at::isFloatingType(data.scalar_type())) {
    throw file_error(where(source),
                     "linear interpolation of an integer tensor (a label map?); use Nearest");
  }
  for (int j = 0; j < 3; ++j) data = apply_samples(data, j, samples[j], read_start[j], interp);
  return data;
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

at::Tensor box_view(const at::Tensor& data, const Index3& start, const Index3& size) {
  return data.narrow(0, start[0], size[0]).narrow(1, start[1], size[1]).narrow(2, start[2], size[2]);
}

Geometry roi_geometry(const Geometry& full, const RoiRecord& record) {
  Geometry g = full;
  g.origin = voxel_to_world(full, {static_cast<double>(record.start[0]),
                                   static_cast<double>(record.start[1]),
                                   static_cast<double>(record.start[2])});
  return g;
}

}  // namespace msam::data
