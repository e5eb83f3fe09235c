// Dataset discovery: which (image, label) files make up a training set. Pure filesystem
// code: nothing here opens an image.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace msam::data {

// Intensity handling depends on the scanner: CT is clamped to [-1000, 1000] HU.
enum class Modality { CT, MR, Other };
Modality parse_modality(const std::string& name);  // "CT", "MR", "other" (case-insensitive)
std::string modality_name(Modality m);

// One labelled scan. `targets` are the label values that form the lesion (the label map is
// binarised as label ∈ targets); empty means "every non-zero value", which is only accepted
// for maps that hold 0 and 1 alone.
struct CaseSource {
  std::string id;  // "<dataset>/<case>", unique across combined datasets
  std::string image, label;
  std::vector<int> targets;
  Modality modality = Modality::Other;
  // The channel to read from a multi-channel image file (imageio::read_image); unset for
  // single-channel files.
  std::optional<int64_t> channel = std::nullopt;
};

// Where one dataset's cases come from. Exactly one of `root` and `pairs` is used:
// - `root` with `image_pattern` + `label_pattern`: file names under `root` in which "{case}"
//   stands for the case name, e.g. BraTS as distributed, one folder per case:
//   "{case}/{case}_flair.nii.gz" + "{case}/{case}_seg.nii.gz" (2018–2021) or
//   "{case}/{case}-t2f.nii.gz" + "{case}/{case}-seg.nii.gz" (2023); the cases are the entries
//   of the first folder level holding "{case}" whose image exists;
// - `root` with a `dataset.json` that lists "training" cases (the Medical Segmentation
//   Decathlon): its {"image", "label"} paths, relative to `root`;
// - `root` with `imagesTr/` + `labelsTr/` (nnU-Net v1 and v2, whose dataset.json lists no
//   cases): `case_0000.nii.gz` ↔ `case.nii.gz` (`case_0001`… are further channels) or
//   same-name pairs (`case.nii.gz` ↔ `case.nii.gz`);
// - `pairs`: explicit (image, label) paths, each a file or a DICOM series folder; case names
//   are the image names without extension (a DICOM folder's own name), so images sharing one label are distinct cases.
// `channel` picks one scan of multi-channel data (e.g. FLAIR of the Decathlon's brain
// tumours): its index, or its name in the root's dataset.json ("modality" in the Decathlon's,
// "channel_names" in nnU-Net v2's), matched without regard to case. In nnU-Net folders it
// selects the `_NNNN` files, elsewhere the channel read from each image file. Data with
// several channels and no `channel` is an error that lists them.
struct DatasetSpec {
  std::string name;  // defaults to the folder name of `root`
  std::string root;
  std::vector<std::pair<std::string, std::string>> pairs;
  std::vector<int> targets;
  Modality modality = Modality::Other;
  std::string image_pattern{}, label_pattern{};
  std::string channel{};
};

// The file name without its image extension (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd).
std::string strip_image_extension(const std::string& file_name);
bool has_image_extension(const std::string& file_name);

// Cases of one dataset, sorted by id. Throws msam::Error naming the missing partner file,
// an unreadable dataset.json (and the key at fault), or a folder without either layout.
std::vector<CaseSource> discover_cases(const DatasetSpec& spec);

// Several datasets as one training set; dataset names must be distinct.
std::vector<CaseSource> discover_cases(const std::vector<DatasetSpec>& specs);

}  // namespace msam::data
