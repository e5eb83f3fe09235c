// msam segment: a real scan, the user's clicks, no ground truth → a mask in the scan's
// geometry, through one interaction::Session with all the clicks.
// Reads raw scans: needs ITK.
#ifdef MSAM_HAVE_ITK
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_support.h"
#include "command.h"
#include "msam/common/log.h"
#include "msam/common/error.h"
#include "msam/imageio/image_io.h"
#include "msam/interaction/session.h"
#include "msam/model/msam.h"

namespace msam::cli {
namespace {

struct Options {
  std::string checkpoint, image, out, prob_out, clicks_json, device = "cpu", precision = "fp32";
  std::vector<std::string> clicks;
  bool world = false, ras = false;
  SessionFlags session;
  int channel = -1;  // none: a single-channel scan
};

// x,y,z or x,y,z,fg|bg in `space`.
interaction::UserClick parse_click(const std::string& s, interaction::Space space) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) parts.push_back(item);
  if (parts.size() != 3 && parts.size() != 4)
    throw Error("--click '" + s + "': expected x,y,z or x,y,z,fg|bg");
  interaction::UserClick c;
  c.space = space;
  for (int i = 0; i < 3; ++i) {
    try {
      size_t used = 0;
      c.point[i] = std::stod(parts[i], &used);
      if (used != parts[i].size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw Error("--click '" + s + "': '" + parts[i] + "' is not a number");
    }
  }
  if (parts.size() == 4) {
    if (parts[3] == "fg" || parts[3] == "1") c.label = interaction::kForeground;
    else if (parts[3] == "bg" || parts[3] == "0") c.label = interaction::kBackground;
    else throw Error("--click '" + s + "': label must be fg or bg");
  }
  return c;
}

// {"clicks": [click, ...]}, each click as interaction::user_click_from_json reads it.
std::vector<interaction::UserClick> read_clicks_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw file_error(path, "cannot open click file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("bad click file: ") + e.what());
  }
  if (!j.is_object() || !j.contains("clicks") || !j["clicks"].is_array())
    throw file_error(path, "expected {\"clicks\": [...]}");
  std::vector<interaction::UserClick> out;
  for (const auto& c : j["clicks"]) out.push_back(interaction::user_click_from_json(c.dump(), path));
  return out;
}

int run(const Options& o) {
  std::vector<interaction::UserClick> clicks;
  const auto space = o.world ? (o.ras ? interaction::Space::kRas : interaction::Space::kLps)
                             : interaction::Space::kVoxel;
  for (const auto& s : o.clicks) clicks.push_back(parse_click(s, space));
  if (!o.clicks_json.empty())
    for (const auto& c : read_clicks_json(o.clicks_json)) clicks.push_back(c);
  if (clicks.empty()) throw Error("no clicks: give at least one --click or --clicks-json");
  if (std::none_of(clicks.begin(), clicks.end(),
                   [](const auto& c) { return c.label == interaction::kForeground; }))
    throw Error("no foreground click: the first window is centred on the foreground clicks");

  interaction::SessionOptions so;
  set_session_options(o.checkpoint, o.session, so);
  so.device = torch::Device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  so.amp_dtype = autocast_dtype(o.precision, so.device);

  std::string summary;
  auto model = load_inference_model(o.checkpoint, so.device, &summary);
  spdlog::info(summary);
  const auto channel = o.channel >= 0 ? std::optional<int64_t>(o.channel) : std::nullopt;
  interaction::Session session(model, imageio::read_image(o.image, channel), so);
  const auto result = session.add_clicks(clicks);
  for (size_t i = 0; i < result.windows.size(); ++i) {
    const auto& w = result.windows[i];
    spdlog::info("window {} at ({}, {}, {}): {} voxels", i + 1, w.center[0], w.center[1],
                 w.center[2], w.voxels);
  }
  if (!result.contained)
    spdlog::warn("the lesion still reaches a window border after {} windows (raise "
                 "--max-windows)",
                 o.session.max_windows);
  imageio::write_volume(o.out, session.mask());
  std::printf("mask: %s (%lld voxels, %zu window(s))\n", o.out.c_str(),
              (long long)result.voxels, result.windows.size());
  if (!o.prob_out.empty()) {
    imageio::write_volume(o.prob_out, session.probabilities());
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
      app.add_option("--channel", o->channel,
                     "which channel of a multi-channel scan (e.g. 0 for FLAIR in the Medical "
                     "Segmentation Decathlon's 4-D brain tumour files)")
          ->check(CLI::NonNegativeNumber);
      app.add_option("--click", o->clicks,
                     "x,y,z[,fg|bg]: voxel indices (or mm with --world); in refinement order");
      app.add_option("--clicks-json", o->clicks_json,
                     "JSON {\"clicks\": [{\"point\": [x,y,z], \"label\": \"fg\", "
                     "\"space\": \"voxel|lps|ras\"}]}");
      app.add_flag("--world", o->world, "--click coordinates are world mm (LPS, as ITK)");
      app.add_flag("--ras", o->ras, "with --world: coordinates are RAS mm (3D Slicer)");
      app.add_option("--out", o->out, "output mask (.nii.gz, .nrrd, .mha)")->required();
      app.add_option("--prob", o->prob_out, "also write the probability map here");
      add_session_options(app, o->session);
      app.add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
      app.add_option("--precision", o->precision, "fp32, or bf16 / fp16 autocast on CUDA")
          ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace msam::cli
#endif  // MSAM_HAVE_ITK
