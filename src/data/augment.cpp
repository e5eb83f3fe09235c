#include "msam/data/augment.h"

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
  uint64_t bits() { return splitmix64(state_); }
  // From the top 53 bits.
  double uniform() { return static_cast<double>(bits() >> 11) * 0x1p-52 - 1.0; }

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

// The sampling grid of grid_sampler (align_corners = false) for output voxel centres p (mm
// from the patch centre) read at the input's M·p, M = R⁻¹ / zoom, R = Rz·Ry·Rx.
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
  return at::affine_grid_generator(t, {1, 1, shape[0], shape[1], shape[2]}, false);
}

}  // namespace

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
  if (options.gamma > 0) {
    SampleStream s(0x2545F4914F6CDD1Dull, seed, epoch, position);
    a.gamma = std::exp(std::log1p(options.gamma) * s.uniform());
  }
  if (options.intensity_scale > 0 || options.intensity_shift > 0) {
    SampleStream s(0x9E6C63D0676A9A99ull, seed, epoch, position);
    a.scale = 1.0 + options.intensity_scale * s.uniform();
    a.shift = options.intensity_shift * s.uniform();
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
      return at::grid_sampler(x.to(at::kFloat).unsqueeze(0).unsqueeze(0), grid, 0, 1, false)[0][0];
    };
    image = sample(image);
    label = sample(label).ge(0.5).to(at::kByte);
  }
  if (a.gamma != 1.0) {
    const auto lo = image.min(), hi = image.max();
    const auto range = (hi - lo).clamp_min(1e-12);
    image = ((image - lo) / range).pow(a.gamma) * range + lo;
  }
  if (a.scale != 1.0 || a.shift != 0.0) image = image * a.scale + a.shift;
}

}  // namespace msam::data
