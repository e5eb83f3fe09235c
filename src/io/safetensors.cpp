#include "msam/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "msam/common/error.h"

namespace msam::io {
namespace {

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  int64_t size;
};

const DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
    {"I16", at::kShort, 2}, {"I8", at::kChar, 1}, {"U8", at::kByte, 1}, {"BOOL", at::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes)
    if (n == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return &d;
  return nullptr;
}

// A header larger than this is certainly corrupt (real headers are kilobytes).
constexpr uint64_t kMaxHeader = 256ull << 20;

// The header length from the first 8 bytes of a `file_size`-byte file, checked against it.
uint64_t header_length(const char* first8, uint64_t file_size, const std::string& source) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(first8[i]);
  if (n > kMaxHeader || n > file_size - 8)
    throw file_error(source, "truncated or not a safetensors file: header length " +
                                 std::to_string(n) + " exceeds the file size " +
                                 std::to_string(file_size));
  return n;
}

nlohmann::json parse_header(const char* begin, uint64_t n, const std::string& source) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(begin, begin + n);
  } catch (const std::exception& e) {
    throw file_error(source, std::string("malformed safetensors header: ") + e.what());
  }
  if (!header.is_object()) throw file_error(source, "safetensors header is not a JSON object");
  return header;
}

std::map<std::string, std::string> metadata_of(const nlohmann::json& header,
                                               const std::string& source) {
  std::map<std::string, std::string> out;
  const auto it = header.find("__metadata__");
  if (it == header.end()) return out;
  if (!it->is_object()) throw file_error(source, "__metadata__ is not an object");
  for (auto m = it->begin(); m != it->end(); ++m) {
    if (!m.value().is_string())
      throw file_error(source, "metadata value '" + m.key() + "' is not a string");
    out[m.key()] = m.value().get<std::string>();
  }
  return out;
}

std::string too_short(uint64_t size) {
  return "not a safetensors file: " + std::to_string(size) +
         " bytes, shorter than the 8-byte header length";
}

}  // namespace

const at::Tensor& TensorFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw file_error(source, "no tensor named '" + name + "'");
  return it->second;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw file_error(path, "read error");
  return ss.str();
}

TensorFile parse_safetensors(const std::string& bytes, const std::string& source) {
  TensorFile out;
  out.source = source;
  if (bytes.size() < 8) throw file_error(source, too_short(bytes.size()));
  const uint64_t n = header_length(bytes.data(), bytes.size(), source);
  const nlohmann::json header = parse_header(bytes.data() + 8, n, source);
  out.metadata = metadata_of(header, source);
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") continue;
    const auto bad = [&](const std::string& why) {
      return file_error(source, "tensor '" + name + "': " + why);
    };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      throw bad("entry needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) throw bad("dtype is not a string");
    const DtypeInfo* dt = dtype_by_name(v["dtype"].get<std::string>());
    if (!dt) throw bad("unsupported dtype " + v["dtype"].dump());
    if (!v["shape"].is_array()) throw bad("shape is not an array");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned()) throw bad("shape entry " + s.dump() + " is not a size");
      const uint64_t d = s.get<uint64_t>();
      if (d != 0 && numel > (uint64_t(1) << 62) / d) throw bad("shape is impossibly large");
      numel *= d;
      shape.push_back(static_cast<int64_t>(d));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw bad("data_offsets must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      throw bad("data [" + std::to_string(b) + ", " + std::to_string(e) +
                ") lies outside the " + std::to_string(data_size) +
                " data bytes (truncated file?)");
    if (e - b != numel * static_cast<uint64_t>(dt->size))
      throw bad("holds " + std::to_string(e - b) + " bytes but shape and dtype need " +
                std::to_string(numel * dt->size));
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt->type));
    if (e > b) std::memcpy(t.data_ptr(), data + b, e - b);
    out.tensors.emplace(name, std::move(t));
  }
  return out;
}

TensorFile read_safetensors(const std::string& path) {
  return parse_safetensors(read_file(path), path);
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  const auto size = static_cast<uint64_t>(in.tellg());
  if (size < 8) throw file_error(path, too_short(size));
  in.seekg(0);
  char first8[8];
  if (!in.read(first8, 8)) throw file_error(path, "read error");
  std::string header(header_length(first8, size, path), '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header.size())))
    throw file_error(path, "read error");
  return metadata_of(parse_header(header.data(), header.size(), path), path);
}

std::string serialize_safetensors(const std::map<std::string, at::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  // Largest element size first keeps every tensor naturally aligned.
  std::vector<std::pair<std::string, at::Tensor>> items;
  for (const auto& [name, t] : tensors) {
    if (!dtype_by_type(t.scalar_type()))
      throw Error("safetensors: tensor '" + name + "' has unsupported dtype " +
                  std::string(c10::toString(t.scalar_type())));
    items.emplace_back(name, t.detach().to(at::kCPU).contiguous());
  }
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return dtype_by_type(a.second.scalar_type())->size > dtype_by_type(b.second.scalar_type())->size;
  });
  nlohmann::ordered_json header;
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : items) {
    const uint64_t nbytes = t.numel() * t.element_size();
    header[name] = {{"dtype", dtype_by_type(t.scalar_type())->name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += h;
  out.reserve(out.size() + offset);
  for (const auto& [name, t] : items)
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw file_error(tmp, std::string("cannot create: ") + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw file_error(tmp, "write failed: " + why);
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw file_error(tmp, std::string("flush failed: ") + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw file_error(path, "cannot replace: " + why);
  }
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace msam::io
