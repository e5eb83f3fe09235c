// A choice about the prompt encoder's geometry that no tensor records, in its own header so
// that the run configuration can name it without LibTorch.
#pragma once
#include <utility>

namespace msam::model {

// Which grid index feeds which row of the Gaussian matrix in the dense PE. Points are always
// encoded as (d, h, w) in tensor index order (the reference's `argwhere` order).
enum class DensePeAxes {
  // The reference's grid feeds [index along dim 1, dim 0, dim 2] (docs/design.md §4.5): a click
  // at (d, h, w) shares the encoding of embedding cell (h, d, w), not of the cell it lies in.
  // Pretrained SAM-Med3D / M-SAM weights expect it.
  kReference,
  // [dim 0, dim 1, dim 2]: a click gets the encoding of the cell that contains it. For models
  // trained from scratch, which otherwise have to learn to undo the transposition.
  kAligned,
};

// The names run configs and checkpoints use.
inline constexpr std::pair<DensePeAxes, const char*> kDensePeAxesNames[] = {
    {DensePeAxes::kReference, "reference"}, {DensePeAxes::kAligned, "aligned"}};

}  // namespace msam::model
