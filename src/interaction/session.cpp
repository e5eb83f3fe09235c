#include "msam/interaction/session.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/common/names.h"
#include "msam/data/components.h"
#include "msam/data/preprocess.h"
#include "msam/interaction/window_continuation.h"

namespace msam::interaction {
namespace {

constexpr std::pair<Space, const char*> kSpaceNames[] = {
    {Space::kVoxel, "voxel"}, {Space::kLps, "lps"}, {Space::kRas, "ras"}};

// Logit of voxels no window reaches: far below any threshold.
constexpr double kOutside = -1e4;

data::Index3 round_index(const data::Point3& p) {
  return {std::llround(p[0]), std::llround(p[1]), std::llround(p[2])};
}

bool inside(const data::Index3& i, at::IntArrayRef shape) {
  for (int a = 0; a < 3; ++a)
    if (i[a] < 0 || i[a] >= shape[a]) return false;
  return true;
}

std::string point_text(const data::Point3& p) {
  return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ", " +
         std::to_string(p[2]) + ")";
}

bool same_click(const Click& a, const Click& b) { return a.voxel == b.voxel && a.label == b.label; }

}  // namespace

const char* name(Space space) { return name_in(kSpaceNames, space); }

Space parse_space(const std::string& text, const std::string& source) {
  return parse_name(kSpaceNames, text, "click space", source);
}

UserClick user_click_from_json(const std::string& json_text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(source, std::string("not JSON: ") + e.what());
  }
  if (!j.is_object()) throw file_error(source, "a click is a JSON object");
  UserClick c;
  const auto point = j.find("point");
  if (point == j.end() || !point->is_array() || point->size() != 3 ||
      !std::all_of(point->begin(), point->end(), [](const auto& v) { return v.is_number(); }))
    throw file_error(source, "a click needs \"point\": [x, y, z] (three numbers)");
  for (int a = 0; a < 3; ++a) {
    c.point[a] = (*point)[a].get<double>();
    if (!std::isfinite(c.point[a])) throw file_error(source, "click coordinates must be finite");
  }
  const auto label = j.value("label", nlohmann::json("fg"));
  if (label == "fg" || label == 1) c.label = kForeground;
  else if (label == "bg" || label == 0) c.label = kBackground;
  else throw file_error(source, "click label must be \"fg\" or \"bg\"");
  const auto space = j.value("space", nlohmann::json("voxel"));
  if (!space.is_string()) throw file_error(source, "click space must be a string");
  c.space = parse_space(space.get<std::string>(), source);
  return c;
}

Session::Session(model::MSAM model, data::Volume scan, SessionOptions options)
    : model_(std::move(model)), scan_(std::move(scan)), options_(std::move(options)) {
  if (scan_.data.dim() != 3)
    throw file_error(scan_.source, "a scan must be 3-D, got " +
                                       std::to_string(scan_.data.dim()) + " dimensions");
  if (options_.max_windows < 1) throw Error("max_windows must be >= 1");
  data::require_finite(scan_);
  bool ct = options_.modality == ScanModality::kCT;
  if (options_.modality == ScanModality::kAuto) {
    // The 1st percentile of a strided sample: air in a CT is about -1000 HU.
    const auto all = scan_.data.flatten();
    auto sample = all.slice(0, 0, all.numel(), std::max<int64_t>(1, all.numel() / 100000)).to(torch::kFloat);
    ct = std::get<0>(sample.kthvalue(std::max<int64_t>(1, sample.numel() / 100)))
             .item<double>() < -500;
  }
  const auto modality = ct ? data::Modality::CT : data::Modality::MR;
  ras_ = data::reorient_to_ras(scan_);
  grid_ = ras_.volume;
  // Before resampling, as in data::preprocess_case: its zeros beyond the scan are background.
  const double background = data::background_value(scan_.data, modality);
  if (background != 0.0) grid_.data = grid_.data.to(torch::kFloat) - background;
  if (options_.spacing) grid_ = data::resample(grid_, *options_.spacing, data::Interp::Linear);
  image_ = grid_.data.to(torch::kFloat);
  if (ct) image_ = image_.clamp(-1000, 1000);
  zscore_over_ = data::zscore_voxels(modality);
  logits_ = torch::full(image_.sizes(), kOutside, torch::kFloat);
  mask_ = to_scan_grid((logits_ > options_.threshold).to(torch::kUInt8), data::Interp::Nearest);
}

data::Index3 Session::model_voxel(const UserClick& c) const {
  data::Point3 world;
  if (c.space == Space::kVoxel) {
    if (!inside(round_index(c.point), scan_.data.sizes()))
      throw Error(scan_.source + ": click " + point_text(c.point) +
                  " lies outside the volume of size " + std::to_string(scan_.data.size(0)) +
                  "×" + std::to_string(scan_.data.size(1)) + "×" +
                  std::to_string(scan_.data.size(2)));
    world = data::voxel_to_world(scan_.geometry, c.point);
  } else {
    world = c.space == Space::kRas ? data::lps_from_ras(c.point) : c.point;
    if (!inside(round_index(data::world_to_voxel(scan_.geometry, world)), scan_.data.sizes()))
      throw Error(scan_.source + ": click at " + name(c.space) + " " + point_text(c.point) +
                  " mm lies outside the scan");
  }
  auto v = round_index(data::world_to_voxel(grid_.geometry, world));
  for (int a = 0; a < 3; ++a) v[a] = std::clamp<int64_t>(v[a], 0, image_.size(a) - 1);
  return v;
}

SegmentationSummary Session::add_click(const UserClick& click) { return add_clicks({click}); }

SegmentationSummary Session::add_clicks(const std::vector<UserClick>& clicks) {
  const auto start = Clock::now();
  std::vector<data::Index3> voxels;
  for (const auto& c : clicks) voxels.push_back(model_voxel(c));
  clicks_.insert(clicks_.end(), clicks.begin(), clicks.end());
  click_voxels_.insert(click_voxels_.end(), voxels.begin(), voxels.end());
  return recompute(start);
}

SegmentationSummary Session::undo() {
  const auto start = Clock::now();
  if (!clicks_.empty()) {
    clicks_.pop_back();
    click_voxels_.pop_back();
  }
  return recompute(start);
}

SegmentationSummary Session::reset() {
  const auto start = Clock::now();
  clicks_.clear();
  click_voxels_.clear();
  return recompute(start);
}

Session::Window& Session::window(const data::Index3& center) {
  for (auto it = windows_.begin(); it != windows_.end(); ++it)
    if (it->first == center) {
      windows_.splice(windows_.begin(), windows_, it);
      return windows_.front().second;
    }
  const int64_t S = model_->config().encoder.img_size;
  auto roi = data::extract_roi(image_, center, {S, S, S});
  auto crop = data::zscore(roi.crop, zscore_over_, scan_.source);
  Window w;
  w.context = model_->encode(crop.unsqueeze(0).unsqueeze(0).to(options_.device));
  w.roi = roi.record;
  const int64_t r = model_->config().low_res_size();
  w.no_mask = torch::zeros({1, 1, r, r, r}, options_.device);
  windows_.emplace_front(center, std::move(w));
  while (windows_.size() > std::max<size_t>(1, options_.cached_windows)) windows_.pop_back();
  return windows_.front().second;
}

std::optional<data::Index3> Session::first_center() const {
  const int64_t S = model_->config().encoder.img_size, reach = S / 2 - S / 8;
  std::optional<data::Index3> center;
  data::Point3 acc{0, 0, 0};
  double n = 0;
  for (size_t i = 0; i < clicks_.size(); ++i) {
    if (clicks_[i].label != kForeground) continue;
    const auto& v = click_voxels_[i];
    for (int a = 0; a < 3; ++a) acc[a] += v[a];
    n += 1;
    bool kept = center.has_value();
    for (int a = 0; a < 3 && kept; ++a) kept = std::abs(v[a] - (*center)[a]) <= reach;
    if (!kept) center = data::Index3{std::llround(acc[0] / n), std::llround(acc[1] / n),
                                     std::llround(acc[2] / n)};
  }
  return center;
}

torch::Tensor Session::adapted(Window& w, const torch::Tensor& mask) {
  if (w.prepared.defined() && w.prepared_mask.is_same(mask)) return w.prepared;
  return model_->adapt(w.context, mask);
}

int Session::prepare_next_click() {
  if (!split_clicks()) return 0;
  torch::NoGradGuard no_grad;
  int prepared = 0;
  for (const auto& report : summary_.windows)
    for (auto& [center, w] : windows_) {
      if (center != report.center || w.low_res.empty()) continue;
      if (w.prepared.defined() && w.prepared_mask.is_same(w.low_res.back())) continue;
      w.prepared = model_->adapt(w.context, w.low_res.back());
      w.prepared_mask = w.low_res.back();
      ++prepared;
    }
  return prepared;
}

torch::Tensor Session::run_window(Window& w, const std::vector<Click>& clicks) {
  // Clicks already run in this window, in the same order, are not run again.
  size_t kept = 0;
  while (kept < clicks.size() && kept < w.done.size() && same_click(clicks[kept], w.done[kept]))
    ++kept;
  w.done.resize(kept);
  w.low_res.resize(kept);
  for (size_t k = kept; k < clicks.size(); ++k) {
    const size_t first = options_.multi_click ? 0 : k;
    const auto batch = to_batch({clicks.begin() + first, clicks.begin() + k + 1}, options_.device);
    const auto& previous = k == 0 ? w.no_mask : w.low_res[k - 1];
    w.low_res.push_back(
        (split_clicks()
             ? model_->decode(w.context, adapted(w, previous), batch.points, batch.labels)
             : model_->click(w.context, batch.points, batch.labels, previous))
            .low_res_masks);
    w.done.push_back(clicks[k]);
  }
  return model_->upsample(w.low_res.back())[0][0].to(torch::kCPU, torch::kFloat);
}

SegmentationSummary Session::recompute(Clock::time_point start) {
  torch::NoGradGuard no_grad;
  compat::AutocastGuard amp(options_.device, options_.amp_dtype);
  SegmentationSummary s;
  s.clicks = static_cast<int64_t>(clicks_.size());
  logits_ = torch::full(image_.sizes(), kOutside, torch::kFloat);
  const int64_t S = model_->config().encoder.img_size;
  const double t = options_.threshold;

  // Without a foreground click there is nothing to segment: the mask stays empty.
  std::deque<std::pair<data::Index3, std::vector<Click>>> queue;
  if (const auto center = first_center()) queue.push_back({*center, {}});
  std::set<data::Index3> visited;
  // The lesion is the part of the mask joined to a foreground click: only it continues into
  // further windows (window_continuation.h).
  std::vector<data::Index3> seeds;
  for (size_t i = 0; i < click_voxels_.size(); ++i)
    if (clicks_[i].label == kForeground) seeds.push_back(click_voxels_[i]);
  int windows = 0;
  while (!queue.empty() && windows < options_.max_windows) {
    auto [c, extra] = queue.front();
    queue.pop_front();
    if (!visited.insert(c).second) continue;
    ++windows;
    const data::Index3 start_index{c[0] - S / 2, c[1] - S / 2, c[2] - S / 2};
    std::vector<Click> clicks;
    for (size_t i = 0; i < click_voxels_.size(); ++i) {
      Click k{{click_voxels_[i][0] - start_index[0], click_voxels_[i][1] - start_index[1],
               click_voxels_[i][2] - start_index[2]},
              clicks_[i].label};
      if (inside(k.voxel, {S, S, S})) clicks.push_back(k);
    }
    clicks.insert(clicks.end(), extra.begin(), extra.end());
    if (clicks.empty()) continue;
    auto& w = window(c);
    const auto win = run_window(w, clicks);
    const auto pasted = data::paste_roi(win, w.roi, torch::full(image_.sizes(), kOutside, torch::kFloat));
    logits_ = torch::maximum(logits_, pasted);
    const auto mask = win > t;
    s.windows.push_back({c, mask.sum().item<int64_t>()});
    const auto full_mask = logits_ > t;
    const auto lesion = data::connected_to(full_mask, seeds);
    const auto lesion_here = data::extract_roi(lesion, c, {S, S, S}).crop;
    torch::Tensor idx;  // the lesion's voxels, found once the lesion continues
    for (const auto& [a, side] : continuation_faces(lesion_here, w.roi)) {
      data::Index3 nc = c;
      nc[a] = std::clamp<int64_t>(c[a] + (side == 0 ? -S / 2 : S / 2), 0, image_.size(a) - 1);
      if (visited.count(nc)) continue;
      if (!idx.defined()) idx = lesion.nonzero();
      const auto target = torch::tensor({nc[0], nc[1], nc[2]}, torch::kLong).view({1, 3});
      const auto best = (idx - target).pow(2).sum(1).argmin().item<int64_t>();
      const data::Index3 p{idx[best][0].item<int64_t>(), idx[best][1].item<int64_t>(),
                           idx[best][2].item<int64_t>()};
      const data::Index3 ns{nc[0] - S / 2, nc[1] - S / 2, nc[2] - S / 2};
      queue.push_back({nc, {Click{{p[0] - ns[0], p[1] - ns[1], p[2] - ns[2]}, kForeground}}});
    }
  }
  s.contained = queue.empty();

  mask_ = to_scan_grid((logits_ > t).to(torch::kUInt8), data::Interp::Nearest);
  const auto& m = mask_;
  s.voxels = m.data.sum().item<int64_t>();
  const auto& sp = scan_.geometry.spacing;
  s.volume_mm3 = static_cast<double>(s.voxels) * sp[0] * sp[1] * sp[2];
  if (s.voxels > 0) {
    std::array<data::Index3, 2> box;
    for (int a = 0; a < 3; ++a) {
      std::vector<int64_t> other;
      for (int b = 0; b < 3; ++b)
        if (b != a) other.push_back(b);
      const auto profile = m.data.amax(other).nonzero();
      box[0][a] = profile.min().item<int64_t>();
      box[1][a] = profile.max().item<int64_t>();
    }
    s.bbox = box;
  }
  s.milliseconds = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  summary_ = s;
  return s;
}

data::Volume Session::to_scan_grid(const torch::Tensor& values, data::Interp interp) const {
  data::Volume v{values, grid_.geometry, scan_.source};
  const auto& ras = ras_.volume.data;
  if (options_.spacing)
    v = data::resample_onto(v, {ras.size(0), ras.size(1), ras.size(2)}, ras_.volume.geometry,
                            interp);
  return data::undo_reorient(v.data, ras_.record);
}

data::Volume Session::mask() const { return mask_; }

data::Volume Session::probabilities() const {
  return to_scan_grid(torch::sigmoid(logits_), data::Interp::Linear);
}

}  // namespace msam::interaction
