// The restricted unpickler of torch.save archives (.pth): the archive's data.pkl is read by
// an unpickler that only understands the opcodes torch.save emits and an allow-list of
// globals (OrderedDict, tensor rebuilding, storage types, argparse.Namespace,
// set/frozenset). Any other class becomes an opaque "skipped object": nothing from the file
// is ever executed, and a skipped object where a tensor is required is an msam::Error.
// Tensors are read from the archive only when asked for.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "msam/io/zip_archive.h"

namespace msam::io {

struct PickleValue;
using PickleValuePtr = std::shared_ptr<PickleValue>;

// A storage reference (kind Storage) or a view of one (kind Tensor); no bytes are loaded.
struct TensorRef {
  std::string storage_key;
  at::ScalarType dtype = at::kByte;
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
};

struct PickleValue {
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Global, Storage,
                    Tensor, Skipped };
  explicit PickleValue(Kind k) : kind(k) {}
  Kind kind;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  // String/Bytes: the text; Global: "module.name"; Skipped: what it was and why skipped.
  std::string s;
  std::vector<PickleValuePtr> items;                           // List (also sets), Tuple
  std::vector<std::pair<PickleValuePtr, PickleValuePtr>> entries;  // Dict, in insertion order
  std::string cls;  // Dict: "dict", "collections.OrderedDict" or "argparse.Namespace"
  TensorRef tensor;    // Storage, Tensor
};

// "a tensor", "a collections.OrderedDict", "a skipped object (why)", ... for messages.
std::string describe(const PickleValue& v);
// The value stored under string key `key` (last one wins, as in Python); nullptr if absent.
PickleValuePtr dict_get(const PickleValue& d, const std::string& key);
// Simple values as JSON; nullopt for tensors, skipped objects and anything containing them.
// A Namespace keeps just its simple fields. Depth-limited: a pickle can build cycles.
std::optional<nlohmann::json> simple_json(const PickleValue& v, int depth = 0);

// A torch.save archive: its data.pkl unpickled (root()), and tensors read on demand.
class TorchArchive {
 public:
  // Throws msam::Error naming `path` for anything that is not a little-endian torch.save
  // archive or whose pickle is malformed.
  explicit TorchArchive(const std::string& path);
  const PickleValuePtr& root() const { return root_; }
  const std::string& path() const { return zip_.path(); }
  // A contiguous tensor owning its memory for a Tensor value; `name` (the state-dict key)
  // names it in errors. Each storage is read once, however many views share it.
  at::Tensor tensor(const std::string& name, const PickleValue& v);

 private:
  const at::Tensor& storage(const std::string& name, const TensorRef& t);

  ZipArchive zip_;
  std::string prefix_;  // the archive's top folder, "<name>/"
  PickleValuePtr root_;
  std::map<std::string, at::Tensor> cache_;
};

}  // namespace msam::io
