// Reading and writing medical volumes (NIfTI, NRRD, MetaImage, DICOM series) through ITK.
// Everything returned keeps its geometry in ITK's LPS convention and the (X, Y, Z) tensor
// axis order of msam::data::Volume; no reorientation happens here (see geometry_ops.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "msam/data/volume.h"

namespace msam::imageio {

// A scan as float32 (X, Y, Z): a view of the x-fastest buffer ITK read (strides
// (1, X, X·Y)), not a transposed copy (see data::Volume). Accepts .nii, .nii.gz, .nrrd,
// .nhdr, .mha, .mhd, or a folder holding exactly one DICOM series (a .nii.gz is decompressed
// once, into a private temporary folder). Files with more than three dimensions are accepted
// when every axis beyond the third has size 1 (e.g. (128,128,128,1,1) NIfTI); they are
// squeezed.
// Multi-channel files (several scans of one geometry in one file: the Medical Segmentation
// Decathlon's brain tumours are 240×240×155×4, FLAIR, T1w, T1gd, T2w on a 4th axis; NRRD
// and NIfTI vector images hold them as pixel components) need `channel`, the index of the
// one to read; only that channel's voxels are read from a 4th axis. A single-channel file
// takes no channel or 0.
// Throws msam::Error naming the path for: a missing path, an unreadable, truncated or
// corrupt file, a 2-D image, a non-singleton 5th+ axis, a multi-channel file without a
// channel or one out of range, and NaN/Inf intensities (an error with their count: a scan
// with non-finite values would silently poison normalisation and training, so it is never
// loaded).
data::Volume read_image(const std::string& path, std::optional<int64_t> channel = std::nullopt);

// A label map (X, Y, Z), x-fastest in memory like read_image's, with an integer dtype:
// uint8 when every value lies in [0, 255], int64 otherwise. Float-typed files are accepted
// when every value is integral (masks are often stored as float32); a fractional, NaN or
// Inf value is an error with its count.
// Same formats and other errors as read_image; a multi-channel label file is an error.
data::Volume read_label(const std::string& path);

// Writes `volume` with its geometry to `path`; the format follows the extension:
// .nii / .nii.gz (NIfTI), .nrrd (NRRD), .mha (MetaImage). .nrrd, .mha and .nii.gz are
// compressed. The pixel type follows the tensor dtype (bool is written as uint8). The file
// is written under a temporary name in the same folder and renamed into place, so a
// reader never sees a half-written file. Throws msam::Error naming the path for an
// unsupported extension, a missing folder, a tensor that is not 3-D, or a failed write.
void write_volume(const std::string& path, const data::Volume& volume);

}  // namespace msam::imageio
