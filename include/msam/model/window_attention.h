// Windowed attention of the image encoder: the reference's window partition (zero padding,
// pad tokens not masked) and an exact closed form of it for a grid smaller than one window.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <utility>

namespace msam::model {

// How a windowed encoder block computes attention when its token grid is smaller than the
// window (M-SAM: 8³ tokens, window 14). Both give the reference's result.
enum class WindowPath {
  Fast,    // real queries only, plus one "pad" key that carries all pad tokens (default)
  Padded,  // the reference's literal padding to window³ tokens (kept as the reference)
};

// Zero-pads a B×D×H×W×C grid at the far end of each axis up to a multiple of `window` and
// cuts it into (B·windows)×window×window×window×C. Also returns the padded sizes.
std::pair<at::Tensor, std::array<int64_t, 3>> window_partition3d(const at::Tensor& x,
                                                                 int64_t window);

// Inverse of window_partition3d: reassembles the windows and drops the padding. (The
// reference names the reassembled axes (Hp, Wp, Dp), which only matters for non-cubic
// grids; the encoder's grids are cubes.)
at::Tensor window_unpartition3d(const at::Tensor& windows, int64_t window,
                                const std::array<int64_t, 3>& padded,
                                const std::array<int64_t, 3>& size);

// Attention of the reference's windowed block for an n³ grid zero-padded to window³
// (n < window), evaluated for the real queries only. Every pad token has q = k = v = the qkv
// bias, so the 2232 pad keys collapse into one key (the k bias) and one value (the v bias)
// whose logit is the log of their summed relative-position weight (closed form in
// docs/design.md §4.3; the padding it reproduces is §4.2).
//   q, k, v: (B, heads, n³, hd) of the real tokens (row-major d, h, w)
//   qkv_bias: (3, heads, hd)
//   rel_d/h/w: (2·window−1)×hd tables, or all undefined for no relative position
// Returns (B, heads, n³, hd), softmax(q·kᵀ·scale + bias)·v over the padded window.
at::Tensor pad_key_window_attention(const at::Tensor& q, const at::Tensor& k,
                                    const at::Tensor& v, const at::Tensor& qkv_bias, int64_t n,
                                    int64_t window, const at::Tensor& rel_d,
                                    const at::Tensor& rel_h, const at::Tensor& rel_w,
                                    double scale);

}  // namespace msam::model
