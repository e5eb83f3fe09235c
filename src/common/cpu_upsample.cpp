#include "msam/common/cpu_upsample.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace msam::cpu {
namespace {

// Per output index along one axis: the two source indices and their weights, as ATen's
// compute_indices_weights_linear (align_corners = false) computes them in float.
struct AxisWeights {
  std::vector<int64_t> i0, i1;
  std::vector<float> w0, w1;
};

AxisWeights axis_weights(int64_t in, int64_t out) {
  AxisWeights a;
  a.i0.resize(out);
  a.i1.resize(out);
  a.w0.resize(out);
  a.w1.resize(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    float real = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (real < 0) real = 0;
    const int64_t i = std::min(static_cast<int64_t>(std::floor(real)), in - 1);
    const float lambda = std::min(std::max(real - static_cast<float>(i), 0.f), 1.f);
    a.i0[o] = i;
    a.i1[o] = i + (i < in - 1 ? 1 : 0);
    a.w1[o] = lambda;
    a.w0[o] = 1.f - lambda;
  }
  return a;
}

// Interpolates along the last axis of `in` (rows × n_in) into `out` (rows × n_out).
void last_axis(const float* in, float* out, int64_t rows, int64_t n_in, const AxisWeights& a) {
  const int64_t n_out = static_cast<int64_t>(a.i0.size());
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* src = in + r * n_in;
      float* dst = out + r * n_out;
      for (int64_t o = 0; o < n_out; ++o) dst[o] = a.w0[o] * src[a.i0[o]] + a.w1[o] * src[a.i1[o]];
    }
  });
}

// Interpolates along a middle axis: `in` is outer × n_in × inner, `out` outer × n_out × inner;
// whole rows of `inner` values are combined at once (contiguous, vectorised).
void middle_axis(const float* in, float* out, int64_t outer, int64_t n_in, int64_t inner,
                 const AxisWeights& a) {
  const int64_t n_out = static_cast<int64_t>(a.i0.size());
  at::parallel_for(0, outer * n_out, 4, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t b = k / n_out, o = k % n_out;
      const float* s0 = in + (b * n_in + a.i0[o]) * inner;
      const float* s1 = in + (b * n_in + a.i1[o]) * inner;
      const float w0 = a.w0[o], w1 = a.w1[o];
      float* dst = out + k * inner;
      for (int64_t j = 0; j < inner; ++j) dst[j] = w0 * s0[j] + w1 * s1[j];
    }
  });
}

}  // namespace

at::Tensor upsample_trilinear(const at::Tensor& x, at::IntArrayRef size) {
  const bool records = c10::GradMode::is_enabled() && x.requires_grad();
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || x.dim() != 5 || size.size() != 3 ||
      records)
    return at::upsample_trilinear3d(x, size, /*align_corners=*/false);
  const auto in = x.contiguous();
  const int64_t nc = in.size(0) * in.size(1), D = in.size(2), H = in.size(3), W = in.size(4);
  const int64_t OD = size[0], OH = size[1], OW = size[2];
  const auto wx = axis_weights(W, OW), wy = axis_weights(H, OH), wz = axis_weights(D, OD);
  // x first, then y, then z: the nesting order of ATen's sums.
  auto along_x = at::empty({nc, D, H, OW}, in.options());
  last_axis(in.data_ptr<float>(), along_x.data_ptr<float>(), nc * D * H, W, wx);
  auto along_y = at::empty({nc, D, OH, OW}, in.options());
  middle_axis(along_x.data_ptr<float>(), along_y.data_ptr<float>(), nc * D, H, OW, wy);
  auto out = at::empty({in.size(0), in.size(1), OD, OH, OW}, in.options());
  middle_axis(along_y.data_ptr<float>(), out.data_ptr<float>(), nc, D, OH * OW, wz);
  return out;
}

}  // namespace msam::cpu
