// Training augmentation of one cached sample: drawn from (seed, epoch, position in the epoch)
// alone, so that every worker, rank and rerun applies the same change to the same sample.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace msam::data {

// All off reproduces the reference's loader without flips. Each kind has its own draw, so
// turning one on leaves the others' draws as they were.
struct AugmentOptions {
  bool random_flips = false;  // torchio RandomFlip(axes=(0, 1, 2)): each axis with p = 0.5
  // Rotation about each of the three axes by an angle uniform in ±rotation_degrees, and an
  // isotropic zoom by a factor uniform in [1 − zoom, 1 + zoom], about the patch centre (the
  // lesion's) in millimetres: anatomy in other poses and of other sizes than the few
  // training scans show. Image trilinear, label trilinear ≥ 0.5, both with edge values
  // outside the patch.
  double rotation_degrees = 0;
  double zoom = 0;
  // Elastic deformation: random vectors at control points every elastic_spacing mm, a cubic
  // B-spline between them, scaled so that the largest displacement along any axis is uniform
  // in [0, elastic] mm; image and label alike. Lesion shapes the few training scans do not
  // have (a glioma's oedema spreads along the white matter, differently in every brain).
  double elastic = 0;
  double elastic_spacing = 24;
  // Contrast: the z-scored patch mapped to [0, 1] by its min and max, raised to γ,
  // log-uniform in [1/(1 + gamma), 1 + gamma], and mapped back (nnU-Net's gamma transform):
  // another scanner's or sequence's curve between dark and bright tissue.
  double gamma = 0;
  // image · s + t with s uniform in [1 − intensity_scale, 1 + intensity_scale] and t uniform in
  // [−intensity_shift, intensity_shift], on the z-scored patch: scans whose normalisation
  // statistics differ (another site, brain mask or bias field) look like these.
  double intensity_scale = 0;
  double intensity_shift = 0;
  // Bias field: the patch above its minimum (a skull-stripped scan's background) multiplied by
  // exp(p(u, v, w)), p a polynomial of degree ≤ 3 in the patch's coordinates scaled to [−1, 1],
  // each of its 19 non-constant coefficients uniform in ±bias_field (TorchIO's RandomBiasField
  // without its constant, which is intensity_scale's job): a coil's smooth intensity
  // inhomogeneity that another site's preprocessing left in (held-out FLAIR scans brightened
  // by such a field lost 0.16 Dice@10 with a model trained without it, 0.02 with it; README).
  double bias_field = 0;
  // Probability of a distractor: the sample's lesion shrunk to 0.3–0.6 of its size (its shape
  // and texture, mirrored at random) and blended into another place of the patch that keeps
  // distractor_gap mm from the lesion and lies inside the body, the label unchanged. Tissue
  // that looks like the target but is not the clicked lesion: the model learns to keep to what
  // the clicks point at and to drop what a background click lands on (a FLAIR hyperintensity
  // beside a glioma), which the few training scans rarely show. The nearer it may come, the
  // more the image alone leaves open and the clicks decide.
  double distractor = 0;
  double distractor_gap = 4.5;
};

// One sample's draw.
struct Augmentation {
  std::array<bool, 3> flips{false, false, false};  // (x, y, z)
  std::array<double, 3> angles{0, 0, 0};           // radians, about x, then y, then z
  double zoom = 1;                                 // > 1 enlarges the content
  // The elastic field's largest displacement along any axis and its control points' spacing
  // (mm), and the seed of its draws; magnitude 0 = none.
  struct Elastic {
    double magnitude = 0, spacing = 0;
    uint64_t seed = 0;
  } elastic;
  double gamma = 1;
  double scale = 1, shift = 0;
  // The coefficients of the bias field's exponent, one per monomial of bias_field_monomials();
  // empty = none.
  std::vector<double> bias_field;
  // The seed of the distractor's placement draws and its distance from the lesion (mm); none =
  // no distractor.
  struct Distractor {
    uint64_t seed = 0;
    double gap_mm = 4.5;
  };
  std::optional<Distractor> distractor;
  bool spatial() const { return angles != std::array<double, 3>{0, 0, 0} || zoom != 1 || elastic.magnitude > 0; }
};

// The exponents (i, j, k) of u^i v^j w^k, 0 < i + j + k ≤ 3, in the order of
// Augmentation::bias_field's coefficients.
const std::vector<std::array<int, 3>>& bias_field_monomials();

// Flip decisions (x, y, z) for the sample at `position` of `epoch`.
std::array<bool, 3> sample_flips(uint64_t seed, int64_t epoch, size_t position);

// The augmentation of the sample at `position` of `epoch`: the flips are sample_flips' (when
// enabled), the rotation and zoom, the elastic field, the gamma, the intensity change and the
// distractor independent draws.
Augmentation sample_augmentation(const AugmentOptions& options, uint64_t seed, int64_t epoch,
                                 size_t position);

// Applies `a` to a patch (X×Y×Z float image, uint8 {0, 1} label, voxel `spacing` in mm): flips,
// rotation, zoom and the elastic field (one resampling), the distractor, the bias field, gamma,
// then scale and shift. A distractor that finds no place within its tries (a lesion that fills the
// patch) is left out. Returns new tensors; a = {} returns the inputs.
void apply_augmentation(const Augmentation& a, const std::array<double, 3>& spacing, at::Tensor& image,
                        at::Tensor& label);

}  // namespace msam::data
