#include "msam/data/synth.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "msam/common/error.h"
#include "msam/data/split.h"
#include "msam/io/safetensors.h"

namespace fs = std::filesystem;

namespace msam::data {

namespace {

struct Rng {
  uint64_t state;
  double uniform(double lo, double hi) { return lo + (hi - lo) * (splitmix64(state) >> 11) * 0x1.0p-53; }
  int64_t integer(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(splitmix64(state) % (hi - lo + 1)); }
};

// Random field with features of about `feature_mm`, unit-ish std: coarse Gaussian noise
// upsampled trilinearly, which is what makes the tissue look structured rather than white.
at::Tensor smooth_noise(const std::array<int64_t, 3>& shape, const std::array<double, 3>& spacing,
                        double feature_mm, at::Generator& gen) {
  std::vector<int64_t> coarse{1, 1};
  for (int d = 0; d < 3; ++d)
    coarse.push_back(std::max<int64_t>(2, std::lround(shape[d] * spacing[d] / feature_mm) + 1));
  auto n = at::randn(coarse, gen, at::kFloat);
  n = at::upsample_trilinear3d(n, {shape[0], shape[1], shape[2]}, false);
  return (n / n.std().clamp_min(1e-6)).squeeze(0).squeeze(0);
}

// Physical coordinates (mm from the volume centre) as three broadcastable tensors.
std::array<at::Tensor, 3> coordinates(const std::array<int64_t, 3>& shape, const std::array<double, 3>& spacing) {
  std::array<at::Tensor, 3> c;
  for (int d = 0; d < 3; ++d) {
    std::vector<int64_t> view{1, 1, 1};
    view[d] = shape[d];
    c[d] = ((at::arange(shape[d], at::kFloat) - (shape[d] - 1) / 2.0) * spacing[d]).view(view);
  }
  return c;
}

at::Tensor ellipsoid_distance(const std::array<at::Tensor, 3>& c, const std::array<double, 3>& centre,
                              const std::array<double, 3>& radii) {
  auto d = at::zeros({1, 1, 1}, at::kFloat);
  for (int i = 0; i < 3; ++i) d = d + ((c[i] - centre[i]) / radii[i]).pow(2);
  return d.sqrt();
}

}  // namespace

SyntheticCase make_synthetic_case(uint64_t seed, int index, int max_lesions) {
  if (max_lesions < 1) throw Error("synth: max_lesions must be ≥ 1");
  uint64_t mix = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index + 1));
  Rng rng{splitmix64(mix)};
  auto gen = at::detail::createCPUGenerator(splitmix64(mix));

  // Every third case has thick slices; field of view about 130 × 130 × 100 mm.
  const bool anisotropic = index % 3 == 2;
  const std::array<double, 3> spacing =
      anisotropic ? std::array<double, 3>{0.8, 0.8, rng.uniform(2.0, 3.0)}
                  : std::array<double, 3>{rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.2)};
  std::array<int64_t, 3> shape;
  for (int d = 0; d < 3; ++d)
    shape[d] = std::lround((d < 2 ? rng.uniform(120, 145) : rng.uniform(90, 110)) / spacing[d]);
  const auto c = coordinates(shape, spacing);
  const double half_x = shape[0] * spacing[0] / 2, half_y = shape[1] * spacing[1] / 2;

  // Body: an ellipse in x–y, extruded along z, with a wobbly outline.
  const double body_a = half_x * rng.uniform(0.8, 0.95), body_b = half_y * rng.uniform(0.7, 0.9);
  const auto body_d = ((c[0] / body_a).pow(2) + (c[1] / body_b).pow(2)).sqrt() +
                      0.04 * smooth_noise(shape, spacing, 40, gen);
  auto hu = at::full({shape[0], shape[1], shape[2]}, -1000.0f);
  auto tissue = 40.0f + 18.0f * smooth_noise(shape, spacing, 30, gen) + 8.0f * smooth_noise(shape, spacing, 6, gen);
  // Fat rim under the skin, then organs and lung fields inside.
  tissue = at::where(body_d > 0.88, -100.0f + 15.0f * smooth_noise(shape, spacing, 10, gen), tissue);
  const int organs = static_cast<int>(rng.integer(1, 3));
  for (int o = 0; o < organs; ++o) {
    const std::array<double, 3> centre{rng.uniform(-0.5, 0.5) * body_a, rng.uniform(-0.5, 0.5) * body_b,
                                       rng.uniform(-20, 20)};
    const std::array<double, 3> radii{rng.uniform(15, 35), rng.uniform(15, 35), rng.uniform(20, 50)};
    const auto d = ellipsoid_distance(c, centre, radii) + 0.1 * smooth_noise(shape, spacing, 20, gen);
    tissue = at::where(d < 1, tissue + static_cast<float>(rng.uniform(-30, 60)), tissue);
  }
  const bool lungs = rng.uniform(0, 1) < 0.5;
  at::Tensor lung_d;
  if (lungs) {
    const std::array<double, 3> radii{body_a * 0.3, body_b * 0.55, 80};
    lung_d = at::minimum(ellipsoid_distance(c, {-body_a * 0.45, 0, 0}, radii),
                         ellipsoid_distance(c, {body_a * 0.45, 0, 0}, radii));
    // Vessels: thin bright ridges of a fine field inside the lung.
    const auto vessels = (smooth_noise(shape, spacing, 8, gen).abs() < 0.08).to(at::kFloat) * 750.0f;
    tissue = at::where(lung_d < 1, -850.0f + 30.0f * smooth_noise(shape, spacing, 15, gen) + vessels, tissue);
  }
  hu = at::where(body_d < 1, tissue, hu);

  // Lesions: lobulated ellipsoids (distance perturbed by a smooth field), soft edges, own
  // texture, hypo- or hyperdense, sometimes with a darker core.
  // Every fourth case from the second on has two lesions, from the fourth on three.
  const int lesions = std::min(max_lesions, index % 4 == 1 ? 2 : index % 4 == 3 ? 3 : 1);
  auto label = at::zeros({shape[0], shape[1], shape[2]}, at::kBool);
  for (int l = 0; l < lesions; ++l) {
    const std::array<double, 3> radii{rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(8, 20)};
    const double max_r = std::max({radii[0], radii[1], radii[2]});
    const std::array<double, 3> centre{rng.uniform(-1, 1) * std::max(1.0, body_a * 0.8 - max_r),
                                       rng.uniform(-1, 1) * std::max(1.0, body_b * 0.8 - max_r),
                                       rng.uniform(-1, 1) * std::max(1.0, shape[2] * spacing[2] / 2 - max_r - 5)};
    // Work on the lesion's box only (twice its radii covers the perturbed, softened edge):
    // full-grid fields per lesion would dominate the cost.
    std::array<at::Tensor, 3> cb;
    std::array<int64_t, 3> lo, len;
    for (int d = 0; d < 3; ++d) {
      const double mid = (shape[d] - 1) / 2.0;
      lo[d] = std::clamp<int64_t>(std::lround((centre[d] - 2 * radii[d]) / spacing[d] + mid), 0, shape[d] - 1);
      const auto hi = std::clamp<int64_t>(std::lround((centre[d] + 2 * radii[d]) / spacing[d] + mid) + 1, lo[d] + 1, shape[d]);
      len[d] = hi - lo[d];
      cb[d] = c[d].narrow(d, lo[d], len[d]);
    }
    auto box = [&](const at::Tensor& t) { return t.narrow(0, lo[0], len[0]).narrow(1, lo[1], len[1]).narrow(2, lo[2], len[2]); };
    const auto d = ellipsoid_distance(cb, centre, radii) + 0.3 * smooth_noise(len, spacing, max_r * 0.7, gen);
    const auto soft = at::sigmoid((1 - d) / 0.08);
    const float sign = rng.uniform(0, 1) < 0.35 ? -1.0f : 1.0f;
    auto hu_box = box(hu);
    const auto base = lungs ? at::where(box(lung_d) < 1, at::scalar_tensor(40.0f), hu_box) : hu_box;
    auto lesion = base + sign * static_cast<float>(rng.uniform(45, 130)) +
                  static_cast<float>(rng.uniform(5, 25)) * smooth_noise(len, spacing, rng.uniform(2, 6), gen);
    if (rng.uniform(0, 1) < 0.3) lesion = at::where(d < 0.45, lesion - 60.0f, lesion);
    // Inside the body only: over air the lesion would be invisible yet labelled.
    const auto inside = box(body_d) < 1;
    hu_box.copy_(hu_box + soft * inside * (lesion - hu_box));
    auto label_box = box(label);
    label_box.copy_(label_box | ((d < 1) & inside));
  }
  hu = hu + 12.0f * at::randn(hu.sizes(), gen, at::kFloat);

  Geometry g;
  g.spacing = spacing;
  g.origin = {rng.uniform(-200, 200), rng.uniform(-200, 200), rng.uniform(-400, 0)};
  if (index % 2 == 1) g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // RAS+ stored, as nibabel writes
  SyntheticCase out;
  out.image = {hu.clamp(-1024, 3071).round().to(at::kShort), g, "synthetic"};
  out.label = {label.to(at::kByte), g, "synthetic"};
  out.lesions = lesions;
  return out;
}

std::vector<std::string> write_synthetic_dataset(const std::string& out, int cases, uint64_t seed,
                                                 const VolumeWriter& write, int max_lesions) {
  if (cases < 1) throw Error("synth: --cases must be ≥ 1");
  std::error_code ec;
  for (const char* sub : {"imagesTr", "labelsTr"}) {
    fs::create_directories(fs::path(out) / sub, ec);
    if (ec) throw file_error((fs::path(out) / sub).string(), "cannot create folder: " + ec.message());
  }
  std::vector<std::string> names;
  nlohmann::json training = nlohmann::json::array();
  for (int i = 0; i < cases; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "case_%03d", i);
    auto c = make_synthetic_case(seed, i, max_lesions);
    const auto image = "imagesTr/" + std::string(name) + "_0000.nii.gz";
    const auto label = "labelsTr/" + std::string(name) + ".nii.gz";
    write((fs::path(out) / image).string(), c.image);
    write((fs::path(out) / label).string(), c.label);
    training.push_back({{"image", "./" + image}, {"label", "./" + label}});
    names.push_back(name);
  }
  const nlohmann::json doc{{"name", "msam_synthetic"},
                           {"description", "synthetic CT-like scans with lesions (msam synth, seed " +
                                               std::to_string(seed) + ")"},
                           {"channel_names", {{"0", "CT"}}},
                           {"labels", {{"background", 0}, {"lesion", 1}}},
                           {"numTraining", cases},
                           {"file_ending", ".nii.gz"},
                           {"training", training}};
  io::write_file_atomically((fs::path(out) / "dataset.json").string(), doc.dump(2) + "\n");
  return names;
}

}  // namespace msam::data
