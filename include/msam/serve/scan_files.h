// Scans and masks as the HTTP API carries them: file bytes in, file bytes out, and paths
// confined to the server's data root.
#pragma once
#include <optional>
#include <string>

#include "msam/data/volume.h"

namespace msam::serve {

// The file `relative` names under `root` (a file or a DICOM series folder), resolved with
// symbolic links followed. Throws PathOutsideRoot for an absolute path outside the root, a
// `..` or a link that leads out of it, and msam::Error when nothing is there.
std::string resolve_under_root(const std::string& root, const std::string& relative);

struct PathOutsideRoot : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct PathNotFound : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The extension that reads `bytes` (".nii.gz", ".nii", ".nrrd", ".mha"), from `filename` when
// it has a known one, else from the content's magic numbers; empty when neither tells.
std::string scan_extension(const std::string& filename, const std::string& bytes);

// Reads an uploaded scan (via a private temporary file, removed afterwards), `channel` of a
// multi-channel file (imageio::read_image). Throws msam::Error naming `name` for an unknown
// format or an unreadable scan.
data::Volume read_scan_bytes(const std::string& bytes, const std::string& name,
                             std::optional<int64_t> channel = std::nullopt);

// `volume` as the bytes of a file with `extension` (".nii.gz", ".nrrd", ...).
std::string volume_bytes(const data::Volume& volume, const std::string& extension);

}  // namespace msam::serve
