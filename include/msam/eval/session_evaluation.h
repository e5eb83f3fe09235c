// What a person gets: a simulated annotator's clicks through interaction::Session, the path
// `msam segment` and `msam serve` take (the window centred on the first click, the lesion
// followed across windows, the mask on the scan's own grid), scored on that grid after every
// click (`msam eval --sessions`). The crop evaluation (evaluator.h) measures the model where it
// trained, in the crop centred on the lesion; this measures the product around it.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "msam/data/cache.h"
#include "msam/data/volume.h"
#include "msam/eval/evaluator.h"
#include "msam/interaction/click.h"
#include "msam/interaction/session.h"
#include "msam/model/msam.h"

namespace msam::eval {

// A case's scan as its run reads it (its own grid and geometry); the ITK-backed
// implementation lives in the CLI.
using ScanReader = std::function<data::Volume(const data::CacheEntryInfo&)>;

struct SessionCase {
  std::string case_id;
  data::Volume scan;   // as read
  data::Volume label;  // binarised, on the scan's grid
  data::Modality modality = data::Modality::MR;
};

struct SessionCaseResult {
  // Dice after each click and the metrics after the last one (`original`), on the scan's grid.
  CaseScores scores;
  std::vector<interaction::Click> clicks;  // voxel indices (x, y, z) of the scan, as given
  data::Volume mask;                       // after the last click, in the scan's geometry
};

// One session: click k placed by options.protocol on the errors of the session's mask after
// click k-1 against the label, on the scan's grid (the center protocol's distance counts
// voxel steps there, so on a grid with thick slices it favours thick-slice directions), drawn
// from the case's own seed (case_seed). `session` gives the preprocessing, the window count
// and the device; its threshold and multi_click are options.threshold and
// options.multi_click, its modality the case's (CT clamped, anything else z-scored over the
// voxels ≠ 0, as data preparation does). Throws msam::Error naming the case when the label's
// shape differs from the scan's or the label is empty; options.mirror is not supported.
SessionCaseResult evaluate_session_case(model::MSAM model, const SessionCase& c,
                                        const EvalOptions& options,
                                        interaction::SessionOptions session);

}  // namespace msam::eval
