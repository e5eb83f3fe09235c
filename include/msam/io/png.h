// A minimal PNG encoder (8-bit grey or RGB, no interlacing) for report figures, so the core
// library needs no image library beyond zlib.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace msam::io {

// PNG bytes of a uint8 tensor shaped (H, W) (grey) or (H, W, 3) (RGB); row 0 is the top.
// Throws msam::Error for any other dtype or shape, or an empty image.
std::string encode_png(const at::Tensor& image);

// encode_png written atomically (msam::io::write_file_atomically); errors name `path`.
void write_png(const std::string& path, const at::Tensor& image);

}  // namespace msam::io
