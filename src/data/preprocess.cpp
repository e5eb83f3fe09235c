#include "msam/data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "msam/common/shape.h"

namespace msam::data {

namespace {

template <size_t N>
std::string array_str(const std::array<double, N>& a) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < N; ++i) o << (i ? ", " : "") << a[i];
  o << "]";
  return o.str();
}

template <size_t N>
bool close(const std::array<double, N>& a, const std::array<double, N>& b, double tol) {
  for (size_t i = 0; i < N; ++i)
    if (std::abs(a[i] - b[i]) > tol) return false;
  return true;
}

// Label values (of `label`, in any dim order) as integers; fractional or negative values are
// errors.
at::Tensor integral_label(at::Tensor data, const Volume& label) {
  if (c10::isFloatingType(data.scalar_type())) {
    if (count_non_finite(data) > 0) throw file_error(label.source, "label has NaN/Inf values");
    if (!at::equal(data, at::round(data)))
      throw file_error(label.source, "label has fractional values (not a label map)");
    data = data.to(at::kLong);
  } else if (data.scalar_type() == at::kBool) {
    data = data.to(at::kByte);
  }
  if (data.scalar_type() != at::kByte) {
    data = data.to(at::kLong);
    const auto min = data.min().item<int64_t>();
    if (min < 0) throw file_error(label.source, "label has negative value " + std::to_string(min));
  }
  return data;
}

// Distinct values; labels are piecewise constant, so remembering the last value keeps the
// set insertions rare even on 512×512×100 grids.
template <typename T>
std::set<int64_t> distinct_values(const at::Tensor& data) {
  std::set<int64_t> values;
  const T* p = data.data_ptr<T>();
  const int64_t n = data.numel();
  bool have_last = false;
  T last{};
  for (int64_t i = 0; i < n; ++i) {
    if (have_last && p[i] == last) continue;
    last = p[i];
    have_last = true;
    values.insert(static_cast<int64_t>(last));
  }
  return values;
}

std::string values_str(const std::set<int64_t>& values) {
  std::ostringstream o;
  size_t shown = 0;
  for (auto v : values) {
    if (shown == 12) {
      o << ", ... (" << values.size() << " values)";
      break;
    }
    o << (shown++ ? ", " : "") << v;
  }
  return "{" + o.str() + "}";
}

template <typename T>
at::Tensor select_targets(const at::Tensor& data, const std::set<int64_t>& targets) {
  auto out = at::empty(data.sizes(), at::kByte);
  const T* p = data.data_ptr<T>();
  uint8_t* q = out.data_ptr<uint8_t>();
  const int64_t n = data.numel();
  bool have_last = false;
  T last{};
  uint8_t last_hit = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!have_last || p[i] != last) {
      last = p[i];
      have_last = true;
      last_hit = targets.count(static_cast<int64_t>(last)) ? 1 : 0;
    }
    q[i] = last_hit;
  }
  return out;
}

std::string targets_str(const std::vector<int>& targets) {
  return values_str(std::set<int64_t>(targets.begin(), targets.end()));
}

// The first and last index of a non-zero voxel along each axis.
struct Bounds {
  Index3 first, last;
};

// The bounding box of a uint8 mask in one pass over its voxels in memory order; nothing for
// an empty mask.
std::optional<Bounds> mask_bounds(const at::Tensor& mask) {
  const auto m = memory_order(mask);
  const int64_t n0 = m.data.size(0), n1 = m.data.size(1), n2 = m.data.size(2);
  const uint8_t* p = m.data.data_ptr<uint8_t>();
  Index3 first{n0, n1, n2}, last{-1, -1, -1};  // in memory-order dims
  for (int64_t i0 = 0; i0 < n0; ++i0) {
    for (int64_t i1 = 0; i1 < n1; ++i1) {
      const uint8_t* row = p + (i0 * n1 + i1) * n2;
      int64_t lo = 0;
      while (lo < n2 && row[lo] == 0) ++lo;
      if (lo == n2) continue;
      int64_t hi = n2 - 1;
      while (row[hi] == 0) --hi;
      first = {std::min(first[0], i0), std::min(first[1], i1), std::min(first[2], lo)};
      last = {std::max(last[0], i0), std::max(last[1], i1), std::max(last[2], hi)};
    }
  }
  if (last[0] < 0) return std::nullopt;
  Bounds b;
  for (int i = 0; i < 3; ++i) {
    b.first[m.dims[i]] = first[i];
    b.last[m.dims[i]] = last[i];
  }
  return b;
}

// The bounding box after reorient_to_ras, from the one in the file's axis order.
Bounds ras_bounds(const Bounds& b, const OrientationRecord& record) {
  Bounds out;
  for (int i = 0; i < 3; ++i) {
    const int a = record.permutation[i];
    const int64_t n = record.input_shape[a];
    out.first[i] = record.flipped[i] ? n - 1 - b.last[a] : b.first[a];
    out.last[i] = record.flipped[i] ? n - 1 - b.first[a] : b.last[a];
  }
  return out;
}

RoiRecord placement(const Bounds& bounds, const Index3& full_shape, const Index3& patch_size) {
  RoiRecord r;
  r.size = patch_size;
  r.full_shape = full_shape;
  for (int d = 0; d < 3; ++d) {
    const double bb_min = static_cast<double>(bounds.first[d]);
    const double bb_max = static_cast<double>(bounds.last[d]) + 1;  // exclusive
    double center = (bb_min + bb_max) / 2;
    // torchio: when the centre cannot be placed exactly, the patch is off by half a voxel
    // towards the origin.
    const bool center_on_index = std::fmod(center, 1.0) == 0.0;
    const bool target_even = patch_size[d] % 2 == 0;
    if (target_even != center_on_index) center -= 0.5;
    r.start[d] = static_cast<int64_t>(std::llround(center - patch_size[d] / 2.0));
  }
  return r;
}

// The patch `crop` of a grid of shape `grid` whose voxels `region` supplies; the patch's
// voxels outside the grid are 0 (torchio pads with 0 before normalising, the image as the
// label). The patch is centred on the lesion, so it overlaps the grid.
at::Tensor cut_patch(const RoiRecord& crop, const Index3& grid, const RegionReader& region) {
  Index3 start, size, offset;
  for (int d = 0; d < 3; ++d) {
    start[d] = std::max<int64_t>(crop.start[d], 0);
    size[d] = std::min(crop.start[d] + crop.size[d], grid[d]) - start[d];
    offset[d] = start[d] - crop.start[d];
  }
  const at::Tensor inside = region(start, size);
  at::Tensor patch = at::zeros({crop.size[0], crop.size[1], crop.size[2]}, inside.options());
  box_view(patch, offset, size).copy_(inside);
  return patch;
}

Index3 shape3(const at::Tensor& t) { return {t.size(0), t.size(1), t.size(2)}; }

}  // namespace

std::string geometry_difference(const Geometry& image, const Geometry& other, double tol) {
  if (!close(image.spacing, other.spacing, tol))
    return "spacing " + array_str(other.spacing) + " vs image " + array_str(image.spacing);
  if (!close(image.origin, other.origin, tol))
    return "origin " + array_str(other.origin) + " vs image " + array_str(image.origin);
  if (!close(image.direction, other.direction, tol))
    return "direction " + array_str(other.direction) + " vs image " + array_str(image.direction);
  return "";
}

std::string settings_json(const PreprocessSettings& s) {
  nlohmann::json j;
  j["target_spacing"] = s.target_spacing ? nlohmann::json(*s.target_spacing) : nlohmann::json(nullptr);
  j["patch_size"] = s.patch_size;
  j["min_label_voxels"] = s.min_label_voxels;
  j["on_geometry_mismatch"] =
      s.on_geometry_mismatch == GeometryMismatch::Error ? "error" : "copy_image_geometry";
  j["geometry_tolerance"] = s.geometry_tolerance;
  return j.dump();
}

at::Tensor binarise_label(const Volume& label, const std::vector<int>& targets) {
  if (label.data.dim() != 3)
    throw file_error(label.source, "label is not 3-D: shape " + shape_str(label.data.sizes()));
  // In memory order: these passes over every voxel then need no transposing copy.
  const auto order = memory_order(label.data);
  const auto data = integral_label(order.data, label);
  const bool bytes = data.scalar_type() == at::kByte;
  const auto values = bytes ? distinct_values<uint8_t>(data) : distinct_values<int64_t>(data);
  std::set<int64_t> wanted(targets.begin(), targets.end());
  if (targets.empty()) {
    for (auto v : values)
      if (v != 0 && v != 1)
        throw file_error(label.source, "label has values " + values_str(values) +
                                           ": not a binary mask, so give the target label value(s)");
    wanted = {1};
  }
  for (auto t : wanted)
    if (t <= 0) throw file_error(label.source, "target label value " + std::to_string(t) + " must be > 0");
  const auto mask = bytes ? select_targets<uint8_t>(data, wanted) : select_targets<int64_t>(data, wanted);
  return mask.permute(order.restore);
}

RoiRecord crop_or_pad_placement(const at::Tensor& mask, const Index3& patch_size) {
  const auto bounds = mask_bounds(mask.ne(0).to(at::kByte));
  if (!bounds) throw Error("crop-or-pad: the mask is empty");
  return placement(*bounds, shape3(mask), patch_size);
}

ZScoreVoxels zscore_voxels(Modality modality) {
  return modality == Modality::CT ? ZScoreVoxels::kPositive : ZScoreVoxels::kNonzero;
}

double background_value(const at::Tensor& scan, Modality modality) {
  if (modality == Modality::CT || scan.dim() != 3) return 0.0;
  std::vector<at::Tensor> faces;
  for (int64_t d = 0; d < 3; ++d) {
    faces.push_back(scan.select(d, 0).flatten());
    faces.push_back(scan.select(d, scan.size(d) - 1).flatten());
  }
  const auto border = at::cat(faces).to(at::kDouble);
  const auto [values, inverse, counts] = at::_unique2(border, /*sorted=*/true, /*return_inverse=*/false,
                                                      /*return_counts=*/true);
  const auto most = counts.argmax().item<int64_t>();
  return 2 * counts[most].item<int64_t>() > border.numel() ? values[most].item<double>() : 0.0;
}

at::Tensor zscore(const at::Tensor& image, ZScoreVoxels over, const std::string& source) {
  const auto x = image.to(at::kFloat);
  const bool positive = over == ZScoreVoxels::kPositive;
  const char* which = positive ? "voxels > 0" : "voxels ≠ 0";
  const auto values = x.masked_select(positive ? x > 0 : x != 0);
  if (values.numel() < 2)
    throw file_error(source, std::string("fewer than two ") + which +
                                 " in the patch: nothing to z-score over");
  const auto mean = values.mean();
  const auto std = values.std();
  if (std.item<float>() == 0.0f)
    throw file_error(source, std::string(which) +
                                 " in the patch all have the same value: z-score undefined");
  return (x - mean) / std;
}

PreparedCase preprocess_case(const Volume& image, const Volume& label, const CaseSource& source,
                             const PreprocessSettings& settings) {
  if (image.data.dim() != 3)
    throw file_error(image.source, "image is not 3-D: shape " + shape_str(image.data.sizes()));
  if (label.data.dim() != 3)
    throw file_error(label.source, "label is not 3-D: shape " + shape_str(label.data.sizes()));
  if (!image.data.sizes().equals(label.data.sizes()))
    throw file_error(label.source, "label shape " + shape_str(label.data.sizes()) +
                                       " differs from image shape " + shape_str(image.data.sizes()) +
                                       " (" + image.source + ")");
  // A misregistered label would train on the wrong voxels, so a mismatch is an error unless
  // the run says to trust the image (see GeometryMismatch).
  Geometry label_geometry = label.geometry;
  const auto diff = geometry_difference(image.geometry, label.geometry, settings.geometry_tolerance);
  if (!diff.empty()) {
    if (settings.on_geometry_mismatch == GeometryMismatch::Error)
      throw file_error(label.source, "label geometry differs from the image (" + image.source +
                                         "): " + diff +
                                         " (set data.copy_image_geometry: true to use the image's "
                                         "geometry for both)");
    label_geometry = image.geometry;
  }
  require_finite(image);

  const auto mask = binarise_label(label, source.targets);
  const auto bounds = mask_bounds(mask);
  if (!bounds)
    throw CaseSkipped(label.source + ": label is empty after selecting target value(s) " +
                      (source.targets.empty() ? std::string("{1}") : targets_str(source.targets)));

  PreparedCase out;
  auto& rec = out.record;
  const Index3 shape = shape3(image.data);
  rec.orientation = ras_orientation(shape, image.geometry, image.source);
  rec.ras_shape = ras_shape(rec.orientation);
  rec.ras_geometry = ras_geometry(rec.orientation);
  // The label is reoriented as its own geometry says (equal to the image's within the
  // tolerance, or a copy of it).
  const auto label_orientation = ras_orientation(shape, label_geometry, label.source);
  const double background = background_value(image.data, source.modality);
  const RegionReader ras_image = [&](const Index3& start, const Index3& size) {
    const auto region = ras_region(image.data, rec.orientation, start, size).to(at::kFloat);
    return background == 0.0 ? region : region - background;
  };

  at::Tensor image_patch;
  if (!settings.target_spacing) {
    rec.grid_geometry = rec.ras_geometry;
    const Index3 label_shape = ras_shape(label_orientation);
    rec.crop = placement(ras_bounds(*bounds, label_orientation), label_shape, settings.patch_size);
    out.label = cut_patch(rec.crop, label_shape, [&](const Index3& start, const Index3& size) {
      return ras_region(mask, label_orientation, start, size);
    });
    image_patch = cut_patch(rec.crop, rec.ras_shape, ras_image);
  } else {
    const Grid grid = resampled_grid(rec.ras_shape, rec.ras_geometry, *settings.target_spacing, image.source);
    rec.resampled = true;
    rec.grid_geometry = grid.geometry;
    // The patch is centred on the resampled lesion, so the label is resampled whole.
    const auto ras_label = reorient_to_ras(Volume{mask, label_geometry, label.source});
    const auto grid_label = resample(ras_label.volume, *settings.target_spacing, Interp::Nearest).data;
    const auto grid_bounds = mask_bounds(grid_label);
    if (!grid_bounds)
      throw CaseSkipped(label.source + ": lesion vanished when resampling to the target spacing");
    rec.crop = placement(*grid_bounds, shape3(grid_label), settings.patch_size);
    out.label = cut_patch(rec.crop, rec.crop.full_shape, [&](const Index3& start, const Index3& size) {
      return box_view(grid_label, start, size);
    });
    image_patch = cut_patch(rec.crop, grid.shape, [&](const Index3& start, const Index3& size) {
      return resample_box({rec.ras_shape, rec.ras_geometry}, ras_image, grid, Interp::Linear, start, size,
                          image.source);
    });
  }
  // After padding is the same as before it: the clamp keeps the padding's zeros.
  if (source.modality == Modality::CT) image_patch = image_patch.clamp(-1000, 1000);
  rec.patch_geometry = roi_geometry(rec.grid_geometry, rec.crop);

  out.label_voxels = out.label.sum().item<int64_t>();
  if (out.label_voxels <= settings.min_label_voxels)
    throw CaseSkipped(label.source + ": lesion has " + std::to_string(out.label_voxels) +
                      " voxels in the patch, at most min_label_voxels = " +
                      std::to_string(settings.min_label_voxels));
  out.image = zscore(image_patch, zscore_voxels(source.modality), image.source).contiguous();
  out.label = out.label.contiguous();
  return out;
}

Volume restore_to_original(const at::Tensor& patch, const PreprocessRecord& record) {
  if (patch.dim() != 3 || patch.size(0) != record.crop.size[0] || patch.size(1) != record.crop.size[1] ||
      patch.size(2) != record.crop.size[2])
    throw Error("restore_to_original: patch shape " + shape_str(patch.sizes()) +
                " does not match the recorded patch size");
  Volume grid{paste_roi(patch, record.crop), record.grid_geometry, ""};
  if (record.resampled) grid = resample_onto(grid, record.ras_shape, record.ras_geometry, Interp::Nearest);
  return undo_reorient(grid.data, record.orientation);
}

at::Tensor patch_from_original(const at::Tensor& mask, const PreprocessRecord& rec) {
  const RegionReader ras = [&](const Index3& start, const Index3& size) {
    return ras_region(mask, rec.orientation, start, size);
  };
  if (!rec.resampled) return cut_patch(rec.crop, rec.ras_shape, ras);
  // Box by box, as the image was resampled: the same voxels as resampling the whole mask.
  const Grid grid{rec.crop.full_shape, rec.grid_geometry};
  return cut_patch(rec.crop, grid.shape, [&](const Index3& start, const Index3& size) {
    return resample_box({rec.ras_shape, rec.ras_geometry}, ras, grid, Interp::Nearest, start, size);
  });
}

}  // namespace msam::data
