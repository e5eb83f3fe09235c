// The `data:` section of an msam YAML config: which datasets, how to split them, how to
// preprocess them and where the cache lives. Schema (every key but cache_dir and datasets is
// optional; an unknown key is an error naming it; relative paths are relative to the
// config file's folder):
//
//   data:
//     cache_dir: cache                  # preprocessed cases (msam prepare writes, training reads)
//     split_file: split.json            # default: <cache_dir>/split.json
//     split_seed: 0
//     split_ratios: [6, 2, 2]           # train : val : test
//     datasets:                         # one or more, combined into one training set
//       - name: lung                    # default: the root folder's name
//         root: /data/Task06_Lung       # imagesTr/ + labelsTr/, or an MSD dataset.json
//         modality: CT                  # CT (clamped to [-1000, 1000]) | MR | other
//         targets: [1]                  # label values forming the lesion; default: 0/1 masks
//       - name: extra
//         pairs:                        # explicit (image, label) pairs instead of root
//           - {image: scans/a.nrrd, label: masks/a.nrrd}
//     preprocess:
//       target_spacing: [1.5, 1.5, 1.5] # mm; absent or null: no resampling
//       patch_size: 128                 # or [x, y, z]
//       min_label_voxels: 1000          # smaller lesions are skipped (and reported)
//       on_geometry_mismatch: error     # or copy_image_geometry
//       geometry_tolerance: 0.001
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "msam/data/dataset.h"
#include "msam/data/preprocess.h"

#ifdef MSAM_HAVE_YAML
#include <yaml-cpp/yaml.h>
#endif

namespace msam::data {

struct DataConfig {
  std::vector<DatasetSpec> datasets;
  PreprocessSettings preprocess;
  std::string cache_dir;
  std::string split_file;
  uint64_t split_seed = 0;
  std::array<double, 3> split_ratios{6.0, 2.0, 2.0};
};

#ifdef MSAM_HAVE_YAML
// Parses a `data:` node; `base_dir` resolves relative paths, `where` prefixes key names in
// errors (e.g. "x.yaml: data").
DataConfig parse_data_config(const YAML::Node& node, const std::string& base_dir, const std::string& where);

// Reads the `data:` section of a config file (other top-level sections belong to other
// commands and are left to them).
DataConfig load_data_config(const std::string& path);
#endif

}  // namespace msam::data
