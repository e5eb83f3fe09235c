// Where a lesion segmented in one model window goes on beyond it. A session (session.h) runs
// a further window across each face this names; anything else the window's mask touches at a
// face (another bright region, a thin spur of the lesion, its tapering edge) is not followed,
// so that a window prompted there does not segment that tissue and pass it on to the next.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "msam/data/geometry_ops.h"

namespace msam::interaction {

// A face of a window: axis 0–2, side 0 (the low face) or 1 (the high one).
struct WindowFace {
  int axis = 0;
  int side = 0;
  bool operator==(const WindowFace& o) const { return axis == o.axis && side == o.side; }
};

// The faces across which `lesion` (bool, the window's size; the lesion alone, see
// data::connected_to) continues: those that are not the scan's border (the window `roi` in the
// scan's grid) and that the lesion meets with at least kContinuationCrossSection of its
// largest cross-section parallel to them.
std::vector<WindowFace> continuation_faces(const at::Tensor& lesion, const data::RoiRecord& roi);

// A lesion cut by a face through its body meets it with a good part of its largest
// cross-section; a ball cut where its cross-section is a quarter of its largest leaves out a
// cap of under 1 % of its volume.
constexpr double kContinuationCrossSection = 0.25;

}  // namespace msam::interaction
