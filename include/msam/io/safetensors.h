// safetensors: 8-byte little-endian header length N, N bytes of JSON, raw little-endian data.
// Plain tensors only, so loading a file never executes anything it contains.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <string>

namespace msam::io {

struct TensorFile {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor called `name`; throws msam::Error naming `name` and `source` if absent.
  const at::Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  std::string source;  // the path it was read from, for error messages
};

// Reads a whole file. Every structural problem (truncation, bad JSON, unknown dtype,
// offsets outside the data, sizes that do not match the shape) is an msam::Error that names
// the file and the tensor.
TensorFile read_safetensors(const std::string& path);
TensorFile parse_safetensors(const std::string& bytes, const std::string& source);
// Only the `__metadata__` of a file: its 8-byte length and JSON header are read, not the
// tensors, so a 1.4 GB checkpoint's metadata costs a few kilobytes of reading. Header problems
// are the errors read_safetensors reports; a truncated data section is not looked at.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// Writes tensors (moved to CPU, made contiguous) atomically: a temporary file in the same
// folder is written, flushed and renamed over `path`, so a crash never leaves a torn file.
// Supported dtypes: F16, BF16, F32, F64, I64, I32, U8, BOOL.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
std::string serialize_safetensors(const std::map<std::string, at::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to `path` atomically (temp file + fsync + rename).
void write_file_atomically(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

}  // namespace msam::io
