// msam segment: a real scan, the user's clicks, no ground truth → a mask in the scan's
// geometry. Clicks run as refinement iterations inside a 128³ ROI; a lesion that reaches the
// ROI border is followed with overlapping windows until it is contained.
// Reads raw scans: needs ITK.
#ifdef MSAM_HAVE_ITK
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli_support.h"
#include "command.h"
#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/data/geometry_ops.h"
#include "msam/data/preprocess.h"
#include "msam/imageio/image_io.h"
#include "msam/model/msam.h"

namespace msam::cli {
namespace {

struct UserClick {
  data::Point3 p;  // as given: voxel index of the file's grid, or world mm
  int label = 1;
};

struct Options {
  std::string checkpoint, image, out, prob_out, clicks_json, modality = "auto", device = "cpu",
              precision = "fp32";
  std::vector<std::string> clicks;
  bool world = false, ras = false, multi_click = false;
  std::vector<double> spacing;
  double threshold = 0.5;
  int max_windows = 8;
};

UserClick parse_click(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) parts.push_back(item);
  if (parts.size() != 3 && parts.size() != 4)
    throw Error("--click '" + s + "': expected x,y,z or x,y,z,fg|bg");
  UserClick c;
  for (int i = 0; i < 3; ++i) {
    try {
      size_t used = 0;
      c.p[i] = std::stod(parts[i], &used);
      if (used != parts[i].size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw Error("--click '" + s + "': '" + parts[i] + "' is not a number");
    }
  }
  if (parts.size() == 4) {
    if (parts[3] == "fg" || parts[3] == "1") c.label = 1;
    else if (parts[3] == "bg" || parts[3] == "0") c.label = 0;
    else throw Error("--click '" + s + "': label must be fg or bg");
  }
  return c;
}

// {"clicks": [{"point": [x, y, z], "label": "fg"|"bg", "space": "voxel"|"lps"|"ras"}]}
std::vector<std::pair<UserClick, std::string>> read_clicks_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw file_error(path, "cannot open click file");
  std::vector<std::pair<UserClick, std::string>> out;
  try {
    auto j = nlohmann::json::parse(in);
    for (const auto& c : j.at("clicks")) {
      UserClick u;
      auto p = c.at("point").get<std::vector<double>>();
      if (p.size() != 3) throw file_error(path, "a click point needs 3 coordinates");
      u.p = {p[0], p[1], p[2]};
      const auto label = c.value("label", std::string("fg"));
      if (label != "fg" && label != "bg") throw file_error(path, "click label must be fg or bg");
      u.label = label == "fg" ? 1 : 0;
      const auto space = c.value("space", std::string("voxel"));
      if (space != "voxel" && space != "lps" && space != "ras")
        throw file_error(path, "click space must be voxel, lps or ras");
      out.emplace_back(u, space);
    }
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("bad click file: ") + e.what());
  }
  return out;
}

data::Index3 round_index(const data::Point3& p) {
  return {std::llround(p[0]), std::llround(p[1]), std::llround(p[2])};
}

bool inside(const data::Index3& i, at::IntArrayRef shape) {
  for (int a = 0; a < 3; ++a)
    if (i[a] < 0 || i[a] >= shape[a]) return false;
  return true;
}

int run(const Options& o) {
  // ---- read, canonicalise, map the clicks ----------------------------------------------
  auto scan = imageio::read_image(o.image);
  std::vector<std::pair<UserClick, std::string>> given;
  for (const auto& s : o.clicks) given.emplace_back(parse_click(s), o.world ? (o.ras ? "ras" : "lps") : "voxel");
  if (!o.clicks_json.empty())
    for (auto& c : read_clicks_json(o.clicks_json)) given.push_back(c);
  if (given.empty()) throw Error("no clicks: give at least one --click or --clicks-json");
  std::vector<data::Point3> world;
  for (const auto& [c, space] : given) {
    data::Point3 w;
    if (space == "voxel") {
      if (!inside(round_index(c.p), scan.data.sizes()))
        throw Error(o.image + ": click (" + std::to_string(c.p[0]) + ", " +
                    std::to_string(c.p[1]) + ", " + std::to_string(c.p[2]) +
                    ") lies outside the volume of size " + std::to_string(scan.data.size(0)) +
                    "×" + std::to_string(scan.data.size(1)) + "×" +
                    std::to_string(scan.data.size(2)));
      w = data::voxel_to_world(scan.geometry, c.p);
    } else {
      w = space == "ras" ? data::lps_from_ras(c.p) : c.p;
      if (!inside(round_index(data::world_to_voxel(scan.geometry, w)), scan.data.sizes()))
        throw Error(o.image + ": click at " + space + " (" + std::to_string(c.p[0]) + ", " +
                    std::to_string(c.p[1]) + ", " + std::to_string(c.p[2]) +
                    ") mm lies outside the scan");
    }
    world.push_back(w);
  }
  if (std::none_of(given.begin(), given.end(), [](const auto& g) { return g.first.label == 1; }))
    throw Error("no foreground click: the first window is centred on the foreground clicks");

  auto ras = data::reorient_to_ras(scan);
  data::Volume grid = ras.volume;
  if (!o.spacing.empty()) {
    if (o.spacing.size() != 3) throw Error("--spacing needs three values (mm)");
    grid = data::resample(grid, {o.spacing[0], o.spacing[1], o.spacing[2]}, data::Interp::Linear);
  }
  auto img = grid.data.to(torch::kFloat);
  bool ct = o.modality == "ct";
  if (o.modality == "auto") {
    auto sample = img.flatten().slice(0, 0, img.numel(), std::max<int64_t>(1, img.numel() / 100000));
    ct = std::get<0>(sample.kthvalue(std::max<int64_t>(1, sample.numel() / 100))).item<double>() < -500;
  }
  if (ct) img = img.clamp(-1000, 1000);
  std::vector<data::Index3> click_vox;
  for (const auto& w : world) {
    auto v = round_index(data::world_to_voxel(grid.geometry, w));
    for (int a = 0; a < 3; ++a) v[a] = std::clamp<int64_t>(v[a], 0, img.size(a) - 1);
    click_vox.push_back(v);
  }

  // ---- model ---------------------------------------------------------------------------
  std::string summary;
  auto model = model::load_for_inference(o.checkpoint, &summary);
  log_line(summary);
  torch::Device device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  model->to(device);
  model->set_cuda_graphs(device.is_cuda());
  torch::NoGradGuard no_grad;
  if (o.precision != "fp32" && !device.is_cuda())
    throw Error("--precision " + o.precision + " needs --device cuda (the CPU runs fp32)");
  compat::AutocastGuard amp(device, o.precision == "bf16"   ? torch::kBFloat16
                                    : o.precision == "fp16" ? torch::kHalf
                                                            : torch::kFloat);
  const int64_t S = model->config().encoder.img_size;
  const data::Index3 roi_size{S, S, S};

  // ---- windows -------------------------------------------------------------------------
  auto logits_full = torch::full(img.sizes(), -1e4, torch::kFloat);
  data::Index3 center{0, 0, 0};
  {
    double n = 0;
    data::Point3 acc{0, 0, 0};
    for (size_t i = 0; i < given.size(); ++i)
      if (given[i].first.label == 1) {
        for (int a = 0; a < 3; ++a) acc[a] += click_vox[i][a];
        n += 1;
      }
    for (int a = 0; a < 3; ++a) center[a] = std::llround(acc[a] / n);
  }
  std::set<data::Index3> visited;
  std::vector<std::pair<data::Index3, std::vector<std::pair<data::Index3, int>>>> queue{
      {center, {}}};
  int windows = 0;
  while (!queue.empty() && windows < o.max_windows) {
    auto [c, extra] = queue.front();
    queue.erase(queue.begin());
    if (!visited.insert(c).second) continue;
    ++windows;
    auto roi = data::extract_roi(img, c, roi_size);
    auto crop = data::zscore_positive(roi.crop, o.image);
    std::vector<std::pair<data::Index3, int>> clicks;
    for (size_t i = 0; i < click_vox.size(); ++i) {
      data::Index3 k{click_vox[i][0] - roi.record.start[0], click_vox[i][1] - roi.record.start[1],
                     click_vox[i][2] - roi.record.start[2]};
      if (inside(k, crop.sizes())) clicks.emplace_back(k, given[i].first.label);
    }
    for (auto& e : extra) clicks.push_back(e);
    if (clicks.empty()) continue;
    auto ctx = model->encode(crop.unsqueeze(0).unsqueeze(0).to(device));
    const int64_t r = model->config().low_res_size();
    auto low = torch::zeros({1, 1, r, r, r}, device);
    torch::Tensor logits;
    for (size_t k = 0; k < clicks.size(); ++k) {
      const size_t first = o.multi_click ? 0 : k;
      std::vector<int64_t> pts, lab;
      for (size_t j = first; j <= k; ++j) {
        pts.insert(pts.end(), clicks[j].first.begin(), clicks[j].first.end());
        lab.push_back(clicks[j].second);
      }
      const int64_t n = static_cast<int64_t>(lab.size());
      auto pred = model->click(ctx, torch::tensor(pts).view({1, n, 3}).to(device),
                               torch::tensor(lab).view({1, n}).to(device), low);
      low = pred.low_res_masks;
      logits = model->upsample(low);
    }
    auto win = logits[0][0].to(torch::kCPU, torch::kFloat);
    auto pasted = data::paste_roi(win, roi.record, torch::full(img.sizes(), -1e4, torch::kFloat));
    logits_full = torch::maximum(logits_full, pasted);
    auto mask = win > o.threshold;
    log_line("window " + std::to_string(windows) + " at (" + std::to_string(c[0]) + ", " +
             std::to_string(c[1]) + ", " + std::to_string(c[2]) + "): " +
             std::to_string(mask.sum().item<int64_t>()) + " voxels");
    // A mask touching a face of the ROI that is not the scan's border continues beyond it:
    // open an overlapping window half a ROI further, prompted at the mask voxel nearest to
    // that window's centre.
    auto full_mask = logits_full > o.threshold;
    for (int a = 0; a < 3; ++a) {
      for (int side = 0; side < 2; ++side) {
        const int64_t face = side == 0 ? 0 : S - 1;
        const int64_t g = roi.record.start[a] + face;
        if (g <= 0 || g >= img.size(a) - 1) continue;
        if (!mask.select(a, face).any().item<bool>()) continue;
        data::Index3 nc = c;
        nc[a] = std::clamp<int64_t>(c[a] + (side == 0 ? -S / 2 : S / 2), 0, img.size(a) - 1);
        if (visited.count(nc)) continue;
        auto idx = full_mask.nonzero();
        auto target = torch::tensor({nc[0], nc[1], nc[2]}, torch::kLong).view({1, 3});
        auto best = (idx - target).pow(2).sum(1).argmin().item<int64_t>();
        data::Index3 p{idx[best][0].item<int64_t>(), idx[best][1].item<int64_t>(),
                       idx[best][2].item<int64_t>()};
        data::Index3 start{nc[0] - S / 2, nc[1] - S / 2, nc[2] - S / 2};
        queue.push_back({nc, {{{p[0] - start[0], p[1] - start[1], p[2] - start[2]}, 1}}});
      }
    }
  }
  if (!queue.empty())
    log_line("warning: the lesion still reaches a window border after " +
             std::to_string(o.max_windows) + " windows (raise --max-windows)");

  // ---- back to the scan's grid ----------------------------------------------------------
  auto to_original = [&](const at::Tensor& t, data::Interp interp) {
    data::Volume v{t, grid.geometry, o.image};
    if (!o.spacing.empty())
      v = data::resample_onto(v, {ras.volume.data.size(0), ras.volume.data.size(1),
                                  ras.volume.data.size(2)},
                              ras.volume.geometry, interp);
    return data::undo_reorient(v.data, ras.record);
  };
  auto mask = to_original((logits_full > o.threshold).to(torch::kUInt8), data::Interp::Nearest);
  imageio::write_volume(o.out, mask);
  std::printf("mask: %s (%lld voxels, %d window(s))\n", o.out.c_str(),
              (long long)mask.data.sum().item<int64_t>(), windows);
  if (!o.prob_out.empty()) {
    auto prob = to_original(torch::sigmoid(logits_full), data::Interp::Linear);
    imageio::write_volume(o.prob_out, prob);
    std::printf("probability map: %s\n", o.prob_out.c_str());
  }
  return 0;
}

const Register reg(
    "segment", "Segment a lesion in a scan from clicks (no ground truth needed)",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      app.add_option("--checkpoint", o->checkpoint, "M-SAM weights (.safetensors or .pth)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--image", o->image, "scan (NIfTI, NRRD, MHA or a DICOM folder)")
          ->required();
      app.add_option("--click", o->clicks,
                     "x,y,z[,fg|bg]: voxel indices (or mm with --world); in refinement order");
      app.add_option("--clicks-json", o->clicks_json,
                     "JSON {\"clicks\": [{\"point\": [x,y,z], \"label\": \"fg\", "
                     "\"space\": \"voxel|lps|ras\"}]}");
      app.add_flag("--world", o->world, "--click coordinates are world mm (LPS, as ITK)");
      app.add_flag("--ras", o->ras, "with --world: coordinates are RAS mm (3D Slicer)");
      app.add_flag("--multi-click", o->multi_click, "feed all clicks so far each iteration");
      app.add_option("--out", o->out, "output mask (.nii.gz, .nrrd, .mha)")->required();
      app.add_option("--prob", o->prob_out, "also write the probability map here");
      app.add_option("--modality", o->modality, "auto, ct (clamp to [-1000, 1000]) or mr")
          ->check(CLI::IsMember({"auto", "ct", "mr"}));
      app.add_option("--spacing", o->spacing, "resample to this spacing (mm) first")
          ->expected(3);
      app.add_option("--threshold", o->threshold,
                     "mask = logits > threshold (0.5: the reference's choice)");
      app.add_option("--max-windows", o->max_windows, "ROI windows to follow a large lesion")
          ->check(CLI::Range(1, 64));
      app.add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
      app.add_option("--precision", o->precision, "fp32, or bf16 / fp16 autocast on CUDA")
          ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace msam::cli
#endif  // MSAM_HAVE_ITK
