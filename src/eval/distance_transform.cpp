#include "msam/eval/distance_transform.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "msam/common/error.h"
#include "msam/common/parallel.h"

namespace msam::eval {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Strided lines are gathered this many at a time, so every read touches whole cache lines.
constexpr int64_t kLinesPerBlock = 16;

// Per-thread scratch for one block of lines of length n.
struct LineScratch {
  std::vector<double> f, d, z;
  std::vector<int64_t> v;
  explicit LineScratch(int64_t n)
      : f(n * kLinesPerBlock), d(n * kLinesPerBlock), z(n), v(n) {}
};

// d[q] = min_p (s·(q − p))² + f[p] over the n samples of one line: the lower envelope of the
// parabolas rooted at the finite samples. Infinite samples root no parabola, so a line without
// finite samples stays infinite.
void transform_line(const double* f, double* d, int64_t n, double s, int64_t* v, double* z) {
  int64_t k = 0;  // parabolas in the envelope; v: their roots, z: left end of their interval
  for (int64_t q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    const double xq = static_cast<double>(q) * s;
    const double hq = f[q] + xq * xq;
    double boundary = -kInf;
    while (k > 0) {
      const double xp = static_cast<double>(v[k - 1]) * s;
      boundary = (hq - (f[v[k - 1]] + xp * xp)) / (2.0 * (xq - xp));
      if (boundary > z[k - 1]) break;
      --k;  // the new parabola hides the previous one entirely
    }
    if (k == 0) boundary = -kInf;
    v[k] = q;
    z[k] = boundary;
    ++k;
  }
  if (k == 0) {
    std::fill(d, d + n, kInf);
    return;
  }
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    const double xq = static_cast<double>(q) * s;
    while (j + 1 < k && z[j + 1] < xq) ++j;
    const double dx = xq - static_cast<double>(v[j]) * s;
    d[q] = dx * dx + f[v[j]];
  }
}

// One pass along `axis`: every line parallel to it is replaced by its 1D transform.
void transform_axis(double* values, const Shape3& shape, int axis, double s, int num_threads) {
  const int64_t n = shape[axis];
  int64_t stride = 1, outer = 1;
  for (int a = axis + 1; a < 3; ++a) stride *= shape[a];
  for (int a = 0; a < axis; ++a) outer *= shape[a];
  if (n == 0 || stride == 0 || outer == 0) return;

  if (stride == 1) {  // contiguous lines
    parallel_for(outer, num_threads, [&](int64_t begin, int64_t end) {
      LineScratch scratch(n);
      for (int64_t line = begin; line < end; ++line) {
        double* data = values + line * n;
        std::copy(data, data + n, scratch.f.begin());
        transform_line(scratch.f.data(), data, n, s, scratch.v.data(), scratch.z.data());
      }
    });
    return;
  }

  const int64_t blocks_per_outer = (stride + kLinesPerBlock - 1) / kLinesPerBlock;
  parallel_for(outer * blocks_per_outer, num_threads, [&](int64_t begin, int64_t end) {
    LineScratch scratch(n);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t o = unit / blocks_per_outer;
      const int64_t first = (unit % blocks_per_outer) * kLinesPerBlock;
      const int64_t width = std::min(kLinesPerBlock, stride - first);
      double* base = values + o * n * stride + first;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t b = 0; b < width; ++b) scratch.f[b * n + t] = base[t * stride + b];
      for (int64_t b = 0; b < width; ++b)
        transform_line(scratch.f.data() + b * n, scratch.d.data() + b * n, n, s,
                       scratch.v.data(), scratch.z.data());
      for (int64_t t = 0; t < n; ++t)
        for (int64_t b = 0; b < width; ++b) base[t * stride + b] = scratch.d[b * n + t];
    }
  });
}

void check_spacing(const Spacing3& spacing) {
  for (double s : spacing)
    if (!(s > 0.0) || !std::isfinite(s)) {
      std::ostringstream msg;
      msg << "distance transform: voxel spacing must be positive and finite, got (" << spacing[0]
          << ", " << spacing[1] << ", " << spacing[2] << ")";
      throw Error(msg.str());
    }
}

}  // namespace

void squared_distance_transform_inplace(double* values, const Shape3& shape,
                                        const Spacing3& spacing, int num_threads) {
  check_spacing(spacing);
  // The passes commute; the contiguous axis goes first for no deeper reason than habit.
  for (int axis = 2; axis >= 0; --axis)
    transform_axis(values, shape, axis, spacing[axis], num_threads);
}

at::Tensor distance_to_features(const at::Tensor& features, const Spacing3& spacing,
                                int num_threads) {
  if (features.dim() != 3) {
    std::ostringstream msg;
    msg << "distance transform: expected a 3D mask, got shape " << features.sizes();
    throw Error(msg.str());
  }
  check_spacing(spacing);
  const auto mask = features.to(at::kCPU).ne(0);
  auto out = at::where(mask, at::zeros({}, at::kDouble), at::full({}, kInf, at::kDouble))
                 .contiguous();
  const Shape3 shape{out.size(0), out.size(1), out.size(2)};
  squared_distance_transform_inplace(out.data_ptr<double>(), shape, spacing, num_threads);
  return out.sqrt_();
}

}  // namespace msam::eval
