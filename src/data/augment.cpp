#include "msam/data/augment.h"

#include <ATen/TensorIndexing.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "msam/data/split.h"

namespace msam::data {
namespace {

// A stream of random numbers for one kind of draw of one sample.
class SampleStream {
 public:
  SampleStream(uint64_t kind, uint64_t seed, int64_t epoch, size_t position) : state_(seed ^ kind) {
    state_ ^= splitmix64(state_) + static_cast<uint64_t>(epoch);
    state_ ^= splitmix64(state_) + static_cast<uint64_t>(position);
  }
  explicit SampleStream(uint64_t state) : state_(state) {}
  uint64_t bits() { return splitmix64(state_); }
  // In [0, 1), from the top 53 bits.
  double unit() { return static_cast<double>(bits() >> 11) * 0x1p-53; }
  // In [-1, 1): 2·unit() is exact, so these are the bits of (top 53 bits) · 2⁻⁵² − 1.
  double uniform() { return 2 * unit() - 1.0; }

 private:
  uint64_t state_;
};

constexpr double kPi = 3.14159265358979323846;

// 3×3 row-major product.
std::array<double, 9> matmul3(const std::array<double, 9>& a, const std::array<double, 9>& b) {
  std::array<double, 9> c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[3 * i + j] += a[3 * i + k] * b[3 * k + j];
  return c;
}

std::array<double, 9> rotation(int axis, double angle) {
  const double c = std::cos(angle), s = std::sin(angle);
  const int u = (axis + 1) % 3, v = (axis + 2) % 3;
  std::array<double, 9> r{};
  r[3 * axis + axis] = 1;
  r[3 * u + u] = c;
  r[3 * u + v] = -s;
  r[3 * v + u] = s;
  r[3 * v + v] = c;
  return r;
}

// Cubic B-spline weights (n × m) of n voxel centres against m control points `step` voxels
// apart, both centred on the patch; m covers every voxel's four nearest control points.
at::Tensor bspline_weights(int64_t n, double step, int64_t m) {
  const auto voxel = (at::arange(n, at::kDouble) - 0.5 * static_cast<double>(n - 1)).unsqueeze(1);
  const auto control = (at::arange(m, at::kDouble) - 0.5 * static_cast<double>(m - 1)).unsqueeze(0) * step;
  const auto u = ((voxel - control) / step).abs();
  return at::where(u < 1, (4 - 6 * u.pow(2) + 3 * u.pow(3)) / 6,
                   at::where(u < 2, (2 - u).pow(3) / 6, at::zeros_like(u)));
}

// The elastic displacement in grid_sampler's normalised coordinates, (1, X, Y, Z, 3) in its
// (z, y, x) order: random control-point vectors, a cubic B-spline between them, scaled so that
// the largest displacement along any axis is e.magnitude mm.
at::Tensor elastic_field(const Augmentation::Elastic& e, const std::array<double, 3>& spacing, at::IntArrayRef shape,
                         const std::array<double, 3>& half) {
  SampleStream s(e.seed);
  std::array<at::Tensor, 3> weights;
  std::array<int64_t, 3> m{};
  for (int d = 0; d < 3; ++d) {
    const double step = e.spacing / spacing[d];
    m[d] = static_cast<int64_t>(std::ceil(static_cast<double>(shape[d] - 1) / step)) + 5;
    weights[d] = bspline_weights(shape[d], step, m[d]);
  }
  std::vector<at::Tensor> mm(3);
  for (int d = 0; d < 3; ++d) {
    std::vector<double> c(static_cast<size_t>(m[0] * m[1] * m[2]));
    for (auto& v : c) v = s.uniform();
    const auto controls = at::from_blob(c.data(), {m[0], m[1], m[2]}, at::kDouble).clone();
    // One axis at a time: (a, b, c) → (a, b, k) → (a, j, k) → (i, j, k).
    const auto z = at::matmul(controls, weights[2].t());
    const auto y = at::matmul(weights[1], z);
    mm[static_cast<size_t>(d)] = at::tensordot(weights[0], y, {1}, {0});
  }
  double largest = 0;
  for (const auto& t : mm) largest = std::max(largest, t.abs().max().item<double>());
  std::vector<at::Tensor> components(3);
  for (int d = 0; d < 3; ++d)
    components[static_cast<size_t>(2 - d)] = mm[static_cast<size_t>(d)] * (e.magnitude / largest / half[d]);
  return at::stack(components, -1).to(at::kFloat).unsqueeze(0);
}

// The sampling grid of grid_sampler (align_corners = false) for output voxel centres p (mm
// from the patch centre) read at the input's M·p + δ(p), M = R⁻¹ / zoom, R = Rz·Ry·Rx, δ the
// elastic field (none without one).
at::Tensor sampling_grid(const Augmentation& a, const std::array<double, 3>& spacing, at::IntArrayRef shape) {
  auto r = matmul3(rotation(2, a.angles[2]), matmul3(rotation(1, a.angles[1]), rotation(0, a.angles[0])));
  std::array<double, 3> half{};
  for (int d = 0; d < 3; ++d) half[d] = 0.5 * static_cast<double>(shape[d]) * spacing[d];
  // Normalised coordinates u_d = p_d / half_d, in grid_sampler's order (z, y, x) for an
  // (X, Y, Z) volume: theta[i][j] = M[2-i][2-j] · half[2-j] / half[2-i].
  std::vector<float> theta(12, 0.0f);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const int mi = 2 - i, mj = 2 - j;
      const double m = r[3 * mj + mi] / a.zoom;  // R⁻¹ = Rᵀ
      theta[4 * i + j] = static_cast<float>(m * half[mj] / half[mi]);
    }
  const auto t = at::from_blob(theta.data(), {1, 3, 4}, at::kFloat).clone();
  auto grid = at::affine_grid_generator(t, {1, 1, shape[0], shape[1], shape[2]}, false);
  if (a.elastic.magnitude > 0) grid = grid + elastic_field(a.elastic, spacing, shape, half);
  return grid;
}

// The distractor: the lesion shrunk by a factor in [kDistractorMinScale, kDistractorMaxScale]
// (its own shape and texture, smaller).
constexpr double kDistractorMinScale = 0.3, kDistractorMaxScale = 0.6;
constexpr int kDistractorTries = 32;
// A copy covering less than this many voxels is no distractor worth the name.
constexpr double kDistractorMinVoxels = 20;

using at::indexing::Slice;

// An (X, Y, Z) tensor as a one-channel float volume of a batch of one, as ATen's 3-D ops take it.
at::Tensor as_volume(const at::Tensor& x) { return x.to(at::kFloat).unsqueeze(0).unsqueeze(0); }

at::Tensor box(const at::Tensor& x, const std::array<int64_t, 3>& lo, const std::array<int64_t, 3>& hi) {
  return x.index({Slice(lo[0], hi[0]), Slice(lo[1], hi[1]), Slice(lo[2], hi[2])});
}

void add_distractor(uint64_t seed, double gap_mm, const std::array<double, 3>& spacing, at::Tensor& image,
                    const at::Tensor& label) {
  const auto lesion = label.nonzero();
  if (lesion.size(0) == 0) return;
  const auto size = image.sizes();
  std::array<int64_t, 3> gap{};
  for (int d = 0; d < 3; ++d) gap[d] = static_cast<int64_t>(std::ceil(gap_mm / spacing[d]));
  const auto near_lesion = at::max_pool3d(as_volume(label), {2 * gap[0] + 1, 2 * gap[1] + 1, 2 * gap[2] + 1},
                                          {1, 1, 1}, {gap[0], gap[1], gap[2]})[0][0]
                               .gt(0);
  // Outside the body: the patch's lowest value (air, or the zeros around a skull-stripped brain).
  const auto body = image.gt(image.min() + 1e-3 * (image.max() - image.min()).clamp_min(1e-6));
  const auto first = std::get<0>(lesion.min(0)), last = std::get<0>(lesion.max(0));
  SampleStream s(seed);
  for (int attempt = 0; attempt < kDistractorTries; ++attempt) {
    const double scale = kDistractorMinScale + (kDistractorMaxScale - kDistractorMinScale) * s.unit();
    // The copy's box: the lesion's bounding box shrunk, with a voxel of rim on each side; its
    // voxels read the patch at the lesion's centre + offset / scale (mirrored at random).
    std::array<int64_t, 3> to{}, to_hi{};
    std::array<at::Tensor, 3> coordinate;
    for (int d = 0; d < 3; ++d) {
      const auto lo = first[d].item<int64_t>(), hi = last[d].item<int64_t>() + 1;
      const auto n = std::min<int64_t>(size[d], static_cast<int64_t>(std::ceil((hi - lo) * scale)) + 2);
      to[d] = static_cast<int64_t>(s.unit() * static_cast<double>(size[d] - n + 1));
      to_hi[d] = to[d] + n;
      const double centre = 0.5 * static_cast<double>(lo + hi - 1);
      auto offset = (at::arange(n, at::kDouble) - 0.5 * static_cast<double>(n - 1)) / scale;
      if (s.bits() & 1) offset = -offset;
      // grid_sampler's normalised coordinate (align_corners = false).
      coordinate[d] = ((centre + offset) * 2 + 1) / static_cast<double>(size[d]) - 1;
    }
    const auto g = at::meshgrid({coordinate[0], coordinate[1], coordinate[2]}, "ij");
    const auto grid = at::stack({g[2], g[1], g[0]}, -1).to(at::kFloat).unsqueeze(0);
    // Trilinear: the label's fraction is the copy's weight, so its rim blends into the tissue
    // around it and no sharp edge tells it from the lesion.
    const auto weight = at::grid_sampler(as_volume(label), grid, 0, 0, false)[0][0];
    const auto values = at::grid_sampler(as_volume(image), grid, 0, 1, false)[0][0];
    const auto covered = weight.gt(0);
    if (weight.sum().item<double>() < kDistractorMinVoxels) continue;
    if (box(near_lesion, to, to_hi).logical_and(covered).any().item<bool>()) continue;
    if (box(body, to, to_hi).logical_and(covered).sum().item<int64_t>() < covered.sum().item<int64_t>() * 9 / 10)
      continue;
    image = image.clone();
    auto target = box(image, to, to_hi);
    target.copy_(weight * values + (1 - weight) * target);
    return;
  }
}

}  // namespace

const std::vector<std::array<int, 3>>& bias_field_monomials() {
  static const auto monomials = [] {
    std::vector<std::array<int, 3>> m;
    for (int i = 0; i <= 3; ++i)
      for (int j = 0; i + j <= 3; ++j)
        for (int k = 0; i + j + k <= 3; ++k)
          if (i + j + k > 0) m.push_back({i, j, k});
    return m;
  }();
  return monomials;
}

std::array<bool, 3> sample_flips(uint64_t seed, int64_t epoch, size_t position) {
  const auto bits = SampleStream(0xD1B54A32D192ED03ull, seed, epoch, position).bits();
  return {(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0};
}

Augmentation sample_augmentation(const AugmentOptions& options, uint64_t seed, int64_t epoch,
                                 size_t position) {
  Augmentation a;
  if (options.random_flips) a.flips = sample_flips(seed, epoch, position);
  if (options.rotation_degrees > 0 || options.zoom > 0) {
    SampleStream s(0x8CB92BA72F3D8DD7ull, seed, epoch, position);
    for (auto& angle : a.angles) angle = options.rotation_degrees * kPi / 180.0 * s.uniform();
    a.zoom = 1.0 + options.zoom * s.uniform();
  }
  if (options.elastic > 0) {
    SampleStream s(0x5851F42D4C957F2Dull, seed, epoch, position);
    const double magnitude = options.elastic * s.unit();
    a.elastic = {magnitude, options.elastic_spacing, s.bits()};
  }
  if (options.gamma > 0) {
    SampleStream s(0x2545F4914F6CDD1Dull, seed, epoch, position);
    a.gamma = std::exp(std::log1p(options.gamma) * s.uniform());
  }
  if (options.intensity_scale > 0 || options.intensity_shift > 0) {
    SampleStream s(0x9E6C63D0676A9A99ull, seed, epoch, position);
    a.scale = 1.0 + options.intensity_scale * s.uniform();
    a.shift = options.intensity_shift * s.uniform();
  }
  if (options.bias_field > 0) {
    SampleStream s(0xE7037ED1A0B428DBull, seed, epoch, position);
    for (size_t m = 0; m < bias_field_monomials().size(); ++m)
      a.bias_field.push_back(options.bias_field * s.uniform());
  }
  if (options.distractor > 0) {
    SampleStream s(0xA0761D6478BD642Full, seed, epoch, position);
    if (s.unit() < options.distractor) a.distractor = Augmentation::Distractor{s.bits(), options.distractor_gap};
  }
  return a;
}

void apply_augmentation(const Augmentation& a, const std::array<double, 3>& spacing, at::Tensor& image,
                        at::Tensor& label) {
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < 3; ++d)
    if (a.flips[d]) dims.push_back(d);
  if (!dims.empty()) {
    image = image.flip(dims);
    label = label.flip(dims);
  }
  if (a.spatial()) {
    const auto grid = sampling_grid(a, spacing, image.sizes());
    // Edge values outside the patch, for image and label alike: a lesion cut by the patch
    // face stays labelled where its intensities are continued.
    auto sample = [&](const at::Tensor& x) {
      return at::grid_sampler(as_volume(x), grid, 0, 1, false)[0][0];
    };
    image = sample(image);
    label = sample(label).ge(0.5).to(at::kByte);
  }
  if (a.distractor) add_distractor(a.distractor->seed, a.distractor->gap_mm, spacing, image, label);
  if (!a.bias_field.empty()) {
    // The patch's coordinates in [−1, 1] along each axis, broadcast against each other.
    std::array<at::Tensor, 3> axis;
    for (int64_t d = 0; d < 3; ++d) {
      const int64_t n = image.size(d);
      std::vector<int64_t> shape{1, 1, 1};
      shape[d] = n;
      axis[d] = (n > 1 ? at::linspace(-1.0, 1.0, n, image.options()) : at::zeros({1}, image.options()))
                    .view(shape);
    }
    auto exponent = at::zeros_like(image);
    const auto& monomials = bias_field_monomials();
    for (size_t m = 0; m < monomials.size(); ++m)
      exponent = exponent + a.bias_field[m] * axis[0].pow(monomials[m][0]) *
                                axis[1].pow(monomials[m][1]) * axis[2].pow(monomials[m][2]);
    const auto lo = image.min();
    image = (image - lo) * exponent.exp() + lo;
  }
  if (a.gamma != 1.0) {
    const auto lo = image.min(), hi = image.max();
    const auto range = (hi - lo).clamp_min(1e-12);
    image = ((image - lo) / range).pow(a.gamma) * range + lo;
  }
  if (a.scale != 1.0 || a.shift != 0.0) image = image * a.scale + a.shift;
}

}  // namespace msam::data
