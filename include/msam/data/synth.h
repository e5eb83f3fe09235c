// Synthetic CT-like scans with lesion labels, for the demo and for tests: structured noisy
// tissue (body outline, fat rim, organs, lung fields, fine noise) with irregular, lobulated
// lesions of varied size, contrast (hypo- or hyperdense) and texture. Cases 1, 5, 9, ...
// have two lesions and 3, 7, ... three, at most `max_lesions`; every third case has thick
// slices; odd cases are stored in RAS and even ones in LPS orientation. Everything follows
// from (seed, case index, max_lesions).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "msam/data/volume.h"

namespace msam::data {

struct SyntheticCase {
  Volume image;  // int16 HU
  Volume label;  // uint8 {0, 1}
  int lesions = 0;
};

SyntheticCase make_synthetic_case(uint64_t seed, int index, int max_lesions = 3);

// Writes a volume (the ITK writer of msam_imageio; core code cannot depend on ITK).
using VolumeWriter = std::function<void(const std::string& path, const Volume& volume)>;

// nnU-Net layout under `out`: imagesTr/case_XXX_0000.nii.gz, labelsTr/case_XXX.nii.gz and a
// dataset.json that is both nnU-Net v2 metadata and an MSD "training" list. Returns the case
// names. Throws msam::Error when `out` cannot be created or `cases` < 1.
std::vector<std::string> write_synthetic_dataset(const std::string& out, int cases, uint64_t seed,
                                                 const VolumeWriter& write, int max_lesions = 3);

}  // namespace msam::data
