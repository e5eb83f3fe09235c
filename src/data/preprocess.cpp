#include "msam/data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace msam::data {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ")";
  return o.str();
}

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

// The first geometry field in which image and label disagree, or "" when they agree.
std::string geometry_difference(const Geometry& image, const Geometry& label, double tol) {
  if (!close(image.spacing, label.spacing, tol))
    return "spacing " + array_str(label.spacing) + " vs image " + array_str(image.spacing);
  if (!close(image.origin, label.origin, tol))
    return "origin " + array_str(label.origin) + " vs image " + array_str(image.origin);
  if (!close(image.direction, label.direction, tol))
    return "direction " + array_str(label.direction) + " vs image " + array_str(image.direction);
  return "";
}

// Label values as integers; fractional or negative values are errors.
at::Tensor integral_label(const Volume& label) {
  at::Tensor data = label.data;
  if (c10::isFloatingType(data.scalar_type())) {
    if (!at::isfinite(data).all().item<bool>())
      throw file_error(label.source, "label has NaN/Inf values");
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
  return data.contiguous();
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

}  // namespace

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
  const auto data = integral_label(label);
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
  return bytes ? select_targets<uint8_t>(data, wanted) : select_targets<int64_t>(data, wanted);
}

RoiRecord crop_or_pad_placement(const at::Tensor& mask, const Index3& patch_size) {
  RoiRecord r;
  r.size = patch_size;
  for (int d = 0; d < 3; ++d) r.full_shape[d] = mask.size(d);
  for (int d = 0; d < 3; ++d) {
    std::vector<int64_t> others;
    for (int o = 0; o < 3; ++o)
      if (o != d) others.push_back(o);
    const auto any = mask.ne(0).sum(others).gt(0).nonzero().flatten();
    if (any.numel() == 0) throw Error("crop-or-pad: the mask is empty");
    const double bb_min = static_cast<double>(any[0].item<int64_t>());
    const double bb_max = static_cast<double>(any[-1].item<int64_t>()) + 1;  // exclusive
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

at::Tensor zscore_positive(const at::Tensor& image, const std::string& source) {
  const auto x = image.to(at::kFloat);
  const auto values = x.masked_select(x > 0);
  if (values.numel() < 2)
    throw file_error(source, "fewer than two voxels > 0 in the patch: nothing to z-score over");
  const auto mean = values.mean();
  const auto std = values.std();
  if (std.item<float>() == 0.0f)
    throw file_error(source, "voxels > 0 in the patch all have the same value: z-score undefined");
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
  const auto finite = at::isfinite(image.data);
  if (!finite.all().item<bool>())
    throw file_error(image.source, std::to_string(finite.numel() - finite.sum().item<int64_t>()) +
                                       " NaN/Inf intensities");

  const auto mask = binarise_label(label, source.targets);
  if (!mask.any().item<bool>())
    throw CaseSkipped(label.source + ": label is empty after selecting target value(s) " +
                      (source.targets.empty() ? std::string("{1}") : targets_str(source.targets)));

  PreparedCase out;
  auto& rec = out.record;
  auto ras_image = reorient_to_ras(Volume{image.data.to(at::kFloat), image.geometry, image.source});
  auto ras_label = reorient_to_ras(Volume{mask, label_geometry, label.source});
  rec.orientation = ras_image.record;
  rec.ras_geometry = ras_image.volume.geometry;
  for (int d = 0; d < 3; ++d) rec.ras_shape[d] = ras_image.volume.data.size(d);

  Volume grid_image = std::move(ras_image.volume), grid_label = std::move(ras_label.volume);
  if (settings.target_spacing) {
    grid_image = resample(grid_image, *settings.target_spacing, Interp::Linear);
    grid_label = resample(grid_label, *settings.target_spacing, Interp::Nearest);
    rec.resampled = true;
  }
  rec.grid_geometry = grid_image.geometry;

  at::Tensor grid = grid_image.data;
  if (source.modality == Modality::CT) grid = grid.clamp(-1000, 1000);

  if (!grid_label.data.any().item<bool>())
    throw CaseSkipped(label.source + ": lesion vanished when resampling to the target spacing");
  rec.crop = crop_or_pad_placement(grid_label.data, settings.patch_size);
  Index3 center;
  for (int d = 0; d < 3; ++d) center[d] = rec.crop.start[d] + settings.patch_size[d] / 2;
  out.label = extract_roi(grid_label.data, center, settings.patch_size, 0.0).crop.to(at::kByte);
  // torchio pads with 0 before normalising, for the image as for the label.
  const auto image_patch = extract_roi(grid, center, settings.patch_size, 0.0).crop;
  rec.patch_geometry = roi_geometry(rec.grid_geometry, rec.crop);

  out.label_voxels = out.label.sum().item<int64_t>();
  if (out.label_voxels <= settings.min_label_voxels)
    throw CaseSkipped(label.source + ": lesion has " + std::to_string(out.label_voxels) +
                      " voxels in the patch, at most min_label_voxels = " +
                      std::to_string(settings.min_label_voxels));
  out.image = zscore_positive(image_patch, image.source).contiguous();
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

}  // namespace msam::data
