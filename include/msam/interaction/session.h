// One person segmenting one scan: the scan in the model's preprocessing, the clicks so far and
// the mask they give, in the scan's own geometry. `msam segment` runs one with all its clicks,
// `msam serve` keeps one per viewer.
//
// Placement: the first model window (the model's input size, e.g. 128³) is centred on the first
// foreground click and stays there while every foreground click lies at least an eighth of the
// window inside its faces; a foreground click beyond that re-centres it on the mean of the
// foreground clicks so far. (A window that moved with every click's mean would encode the scan
// again for almost every foreground click.) Every click inside a window runs as one refinement
// iteration there, in click order. The lesion, the part of the mask joined to a foreground click,
// continues beyond a face of its window that is not the scan's border where it meets that face with
// a good part of its cross-section (window_continuation.h): a window half a window further is run,
// prompted at the lesion voxel nearest its centre, until the lesion is contained or `max_windows`
// have run. The result is recomputed from all clicks after each change, but nothing is computed
// twice: each window's encoding and the low-res logits after each of its clicks are kept, so a
// click that keeps the windows where they were costs one refinement iteration, and undo costs none.
// The part of that iteration that depends on the previous mask alone (model::MSAMImpl::adapt) can
// run ahead, in the pause before the next click: prepare_next_click().
#pragma once
#include <torch/types.h>

#include <array>
#include <chrono>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "msam/data/geometry_ops.h"
#include "msam/data/preprocess.h"
#include "msam/data/volume.h"
#include "msam/interaction/click.h"
#include "msam/model/msam.h"

namespace msam::interaction {

// How a point is given: a voxel index (x, y, z) of the scan's own grid (fractions allowed,
// rounded), or world millimetres in LPS (ITK, DICOM) or RAS (3D Slicer, NiiVue).
enum class Space { kVoxel, kLps, kRas };
const char* name(Space space);
Space parse_space(const std::string& text, const std::string& source);

// A click as a person gives it.
struct UserClick {
  data::Point3 point{0, 0, 0};
  int label = kForeground;
  Space space = Space::kVoxel;
};
// {"point": [x, y, z], "label": "fg"|"bg", "space": "voxel"|"lps"|"ras"} (label and space
// optional: fg, voxel). Anything else throws msam::Error naming `source`.
UserClick user_click_from_json(const std::string& json_text, const std::string& source);

enum class ScanModality { kAuto, kCT, kMR };  // kAuto: CT when the 1st percentile is < -500 HU

struct SessionOptions {
  std::optional<data::Point3> spacing;  // resample to this spacing (mm) first; none: native
  ScanModality modality = ScanModality::kAuto;  // CT intensities are clamped to [-1000, 1000]
  double threshold = kReferenceClickThreshold;  // mask = logits > threshold
  bool multi_click = false;  // feed all of a window's clicks so far, not only the newest
  int max_windows = 8;
  torch::Device device = torch::kCPU;
  at::ScalarType amp_dtype = at::kFloat;  // kBFloat16 / kHalf: CUDA autocast
  size_t cached_windows = 8;              // encodings kept (each a few MB)
};

struct WindowReport {
  data::Index3 center{0, 0, 0};  // in the model's grid (RAS+, resampled)
  int64_t voxels = 0;            // of this window's mask
};

// The state after a change.
struct SegmentationSummary {
  int64_t clicks = 0;
  int64_t voxels = 0;       // of the mask on the scan's grid
  double volume_mm3 = 0;
  // Inclusive voxel index box of the mask on the scan's grid; none when the mask is empty.
  std::optional<std::array<data::Index3, 2>> bbox;
  std::vector<WindowReport> windows;
  bool contained = true;  // false: the lesion still reaches a window face after max_windows
  double milliseconds = 0;
};

class Session {
 public:
  // `model` is shared, not copied: callers serialise its use (one model call at a time).
  // Throws msam::Error naming the scan's source for a scan the model cannot take (not 3-D,
  // NaN or Inf voxels).
  Session(model::MSAM model, data::Volume scan, SessionOptions options);

  const data::Volume& scan() const { return scan_; }
  const std::vector<UserClick>& clicks() const { return clicks_; }
  const SessionOptions& options() const { return options_; }

  // A click outside the scan throws msam::Error naming the point, and changes nothing.
  SegmentationSummary add_click(const UserClick& click);
  // Several at once, computed once (`msam segment`); all are checked before any is added.
  SegmentationSummary add_clicks(const std::vector<UserClick>& clicks);
  SegmentationSummary undo();   // the last click off (nothing when there is none)
  SegmentationSummary reset();  // every click off
  const SegmentationSummary& summary() const { return summary_; }

  // Runs, for each window the last change ran, the mask prompt's part of the next click there
  // (model::MSAMImpl::adapt of the window's newest low-res logits), so that the next click in
  // it costs the decoder alone. The same work the click would do, done earlier: results do not
  // change. Returns the windows prepared (0 when all were already). On the CPU only: on a GPU
  // a whole click takes milliseconds (and replays a CUDA graph).
  int prepare_next_click();

  // uint8 0/1 and sigmoid probabilities on the scan's own grid and geometry.
  data::Volume mask() const;
  data::Volume probabilities() const;

 private:
  struct Window {
    model::VolumeContext context;
    data::RoiRecord roi;
    std::vector<Click> done;             // clicks run in this window so far, in order
    std::vector<torch::Tensor> low_res;  // the low-res logits after each of them
    torch::Tensor no_mask;               // the first click's mask prompt (all zeros)
    // adapt() of `mask` (one of the tensors above), computed ahead of the click that takes it.
    torch::Tensor prepared_mask, prepared;
  };
  using Clock = std::chrono::steady_clock;

  data::Index3 model_voxel(const UserClick& click) const;  // throws when outside the scan
  // The first window's centre for the clicks so far (the placement rule above); none without
  // a foreground click.
  std::optional<data::Index3> first_center() const;
  bool split_clicks() const { return options_.device.is_cpu(); }  // adapt() ahead, decode()
  torch::Tensor adapted(Window& w, const torch::Tensor& mask);
  Window& window(const data::Index3& center);
  torch::Tensor run_window(Window& w, const std::vector<Click>& clicks);  // window logits
  SegmentationSummary recompute(Clock::time_point start);
  data::Volume to_scan_grid(const torch::Tensor& grid_values, data::Interp interp) const;

  model::MSAM model_;
  data::Volume scan_;
  SessionOptions options_;
  data::Reoriented ras_;
  data::Volume grid_;   // RAS+, resampled: the grid the model sees (unclamped; MR less its background value)
  torch::Tensor image_; // float, clamped for CT
  data::ZScoreVoxels zscore_over_ = data::ZScoreVoxels::kNonzero;  // kPositive for CT
  std::vector<UserClick> clicks_;
  std::vector<data::Index3> click_voxels_;  // in the model's grid
  std::list<std::pair<data::Index3, Window>> windows_;  // most recently used first
  torch::Tensor logits_;  // on the model's grid; -1e4 where no window reaches
  data::Volume mask_;     // logits_ > threshold on the scan's grid, made once per change
  SegmentationSummary summary_;
};

}  // namespace msam::interaction
