// Trilinear upsampling on the CPU in three one-axis passes.
//
// Why: every click upsamples the 32³ low-res logits to the 128³ input grid, and ATen's CPU
// trilinear kernel (LibTorch 1.13) spends ~20 ms on it, one eighth of a click, reading eight
// neighbours per output voxel. Linear interpolation along x, then y, then z computes the same
// sums in the same order (ATen nests z(y(x))) from two neighbours per pass: ~1 ms. Index and
// weight rules are ATen's (align_corners = false, scale = in/out, source index clamped at 0),
// so outputs match at.upsample_trilinear3d to float rounding. Only where no autograd graph is
// recorded and on float CPU tensors; every other case is the ATen op.
#pragma once
#include <ATen/ATen.h>

namespace msam::cpu {

// x: N×C×D×H×W → N×C×size[0]×size[1]×size[2], align_corners = false.
at::Tensor upsample_trilinear(const at::Tensor& x, at::IntArrayRef size);

}  // namespace msam::cpu
