#include "msam/io/pth_import.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"
#include "msam/io/zip_archive.h"

namespace msam::io {
namespace {

// ---- pickled values ------------------------------------------------------------------

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// A storage reference (kind Storage) or a view of one (kind Tensor); no bytes are loaded.
struct TensorRef {
  std::string storage_key;
  at::ScalarType dtype = at::kByte;
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
};

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Global, Storage,
                    Tensor, Skipped };
  explicit Value(Kind k) : kind(k) {}
  Kind kind;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  // String/Bytes: the text; Global: "module.name"; Skipped: what it was and why skipped.
  std::string s;
  std::vector<ValuePtr> items;                           // List (also sets), Tuple
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // Dict, in insertion order
  std::string cls;  // Dict: "dict", "collections.OrderedDict" or "argparse.Namespace"
  TensorRef tensor;    // Storage, Tensor
};

ValuePtr make(Value::Kind k) { return std::make_shared<Value>(k); }
ValuePtr make_int(int64_t i) {
  auto v = make(Value::Kind::Int);
  v->i = i;
  return v;
}
ValuePtr make_string(Value::Kind k, std::string s) {
  auto v = make(k);
  v->s = std::move(s);
  return v;
}
ValuePtr make_dict(const std::string& cls) {
  auto v = make(Value::Kind::Dict);
  v->cls = cls;
  return v;
}
ValuePtr skipped(const std::string& why) { return make_string(Value::Kind::Skipped, why); }

std::string describe(const Value& v) {
  switch (v.kind) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "a bool";
    case Value::Kind::Int: return "an int";
    case Value::Kind::Float: return "a float";
    case Value::Kind::String: return "a string";
    case Value::Kind::Bytes: return "bytes";
    case Value::Kind::List: return "a list";
    case Value::Kind::Tuple: return "a tuple";
    case Value::Kind::Dict: return "a " + v.cls;
    case Value::Kind::Global: return "the global " + v.s;
    case Value::Kind::Storage: return "a storage";
    case Value::Kind::Tensor: return "a tensor";
    case Value::Kind::Skipped: return "a skipped object (" + v.s + ")";
  }
  return "?";
}

// The value stored under string key `key` (last one wins, as in Python); nullptr if absent.
ValuePtr dict_get(const Value& d, const std::string& key) {
  for (auto it = d.entries.rbegin(); it != d.entries.rend(); ++it)
    if (it->first->kind == Value::Kind::String && it->first->s == key) return it->second;
  return nullptr;
}

// ---- allow-listed globals --------------------------------------------------------------

std::optional<at::ScalarType> storage_dtype(const std::string& global) {
  static const std::map<std::string, at::ScalarType> kStorages{
      {"torch.HalfStorage", at::kHalf},   {"torch.FloatStorage", at::kFloat},
      {"torch.DoubleStorage", at::kDouble}, {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},   {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort}, {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},   {"torch.BoolStorage", at::kBool},
      {"torch.UntypedStorage", at::kByte},
  };
  auto it = kStorages.find(global);
  if (it == kStorages.end()) return std::nullopt;
  return it->second;
}

bool is_set_type(const std::string& g) {
  return g == "builtins.set" || g == "builtins.frozenset" || g == "__builtin__.set" ||
         g == "__builtin__.frozenset";
}

std::optional<std::vector<int64_t>> int_tuple(const Value& v) {
  if (v.kind != Value::Kind::Tuple) return std::nullopt;
  std::vector<int64_t> out;
  for (const auto& x : v.items) {
    if (x->kind != Value::Kind::Int) return std::nullopt;
    out.push_back(x->i);
  }
  return out;
}

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]): recorded as a view, checked when it is materialised.
ValuePtr rebuild_tensor(const Value& args) {
  const auto& a = args.items;
  if (args.kind == Value::Kind::Tuple && !a.empty() && a[0]->kind == Value::Kind::Skipped)
    return a[0];  // keeps the reason the storage was skipped
  if (args.kind != Value::Kind::Tuple || a.size() < 4 || a[0]->kind != Value::Kind::Storage ||
      a[1]->kind != Value::Kind::Int)
    return skipped("_rebuild_tensor_v2 with unexpected arguments");
  auto sizes = int_tuple(*a[2]), strides = int_tuple(*a[3]);
  if (!sizes || !strides || sizes->size() != strides->size())
    return skipped("_rebuild_tensor_v2 with malformed size/stride");
  auto t = make(Value::Kind::Tensor);
  t->tensor = a[0]->tensor;
  t->tensor.offset = a[1]->i;
  t->tensor.sizes = *sizes;
  t->tensor.strides = *strides;
  return t;
}

// REDUCE: the only callables "called" are the allow-listed ones, interpreted here;
// everything else yields a skipped object and its arguments are dropped.
ValuePtr reduce(const Value& callable, const Value& args) {
  if (callable.kind != Value::Kind::Global)
    return skipped("call of " + describe(callable));
  const std::string& g = callable.s;
  const bool tuple = args.kind == Value::Kind::Tuple;
  if (g == "collections.OrderedDict" && tuple && args.items.empty())
    return make_dict("collections.OrderedDict");
  if (g == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args);
  if ((g == "torch._utils._rebuild_parameter" ||
       g == "torch._utils._rebuild_parameter_with_state") &&
      tuple && !args.items.empty() &&
      (args.items[0]->kind == Value::Kind::Tensor || args.items[0]->kind == Value::Kind::Skipped))
    return args.items[0];
  if (is_set_type(g) && tuple) {
    auto set = make(Value::Kind::List);
    if (args.items.size() == 1 && args.items[0]->kind == Value::Kind::List)
      set->items = args.items[0]->items;
    else if (!args.items.empty())
      return skipped(g + " with unexpected arguments");
    return set;
  }
  return skipped(g + " is not in the allow-list");
}

// ---- the restricted unpickler ----------------------------------------------------------

class Unpickler {
 public:
  Unpickler(const std::string& data, std::string where) : d_(data), where_(std::move(where)) {}

  ValuePtr load() {
    for (;;) {
      op_pos_ = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                      // PROTO
        case 0x95: take(8); break;                   // FRAME: framing only
        case '.':                                    // STOP
          if (stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) +
                                       " values on the stack");
          return stack_.back();
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '}': push(make_dict("dict")); break;          // EMPTY_DICT
        case ']': push(make(Value::Kind::List)); break;    // EMPTY_LIST
        case ')': push(make(Value::Kind::Tuple)); break;   // EMPTY_TUPLE
        case 0x8f: push(make(Value::Kind::List)); break;   // EMPTY_SET
        case 'N': push(make(Value::Kind::None)); break;    // NONE
        case 0x88: case 0x89: {                            // NEWTRUE, NEWFALSE
          auto v = make(Value::Kind::Bool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'J': push(make_int(static_cast<int32_t>(uint_le(4)))); break;  // BININT
        case 'K': push(make_int(static_cast<int64_t>(uint_le(1)))); break;  // BININT1
        case 'M': push(make_int(static_cast<int64_t>(uint_le(2)))); break;  // BININT2
        case 0x8a: push(long_int(uint_le(1))); break;                        // LONG1
        case 0x8b: push(long_int(uint_le(4))); break;                        // LONG4
        case 'G': {                                                          // BINFLOAT
          uint64_t bits = 0;
          for (char c : take(8)) bits = (bits << 8) | static_cast<unsigned char>(c);
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 0x8c: push(make_string(Value::Kind::String, take(uint_le(1)))); break;
        case 'X': push(make_string(Value::Kind::String, take(uint_le(4)))); break;
        case 0x8d: push(make_string(Value::Kind::String, take(uint_le(8)))); break;
        case 'U': push(make_string(Value::Kind::String, take(uint_le(1)))); break;
        case 'T': push(make_string(Value::Kind::String, take(uint_le(4)))); break;
        case 'C': push(make_string(Value::Kind::Bytes, take(uint_le(1)))); break;
        case 'B': push(make_string(Value::Kind::Bytes, take(uint_le(4)))); break;
        case 0x8e: case 0x96:                                 // BINBYTES8, BYTEARRAY8
          push(make_string(Value::Kind::Bytes, take(uint_le(8))));
          break;
        case 't': {                                                          // TUPLE
          auto v = make(Value::Kind::Tuple);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                                   // TUPLE1-3
          auto v = make(Value::Kind::Tuple);
          v->items.resize(op - 0x84);
          for (auto it = v->items.rbegin(); it != v->items.rend(); ++it) *it = pop();
          push(v);
          break;
        }
        case 'l': case 0x91: {                                      // LIST, FROZENSET
          auto v = make(Value::Kind::List);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'd': {                                                          // DICT
          auto v = make_dict("dict");
          set_items(*v, pop_mark());
          push(v);
          break;
        }
        case 's': {                                                          // SETITEM
          auto value = pop();
          auto key = pop();
          set_items(*top(), {key, value});
          break;
        }
        case 'u': {                                                          // SETITEMS
          auto kv = pop_mark();
          set_items(*top(), kv);
          break;
        }
        case 'a': {                                                          // APPEND
          auto item = pop();
          append(*top(), {item});
          break;
        }
        case 'e': case 0x90: {                             // APPENDS, ADDITEMS
          auto items = pop_mark();
          append(*top(), items);
          break;
        }
        case 'c': {                                                          // GLOBAL
          std::string module = line();
          push(make_string(Value::Kind::Global, module + "." + line()));
          break;
        }
        case 0x93: {                                                         // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          if (module->kind != Value::Kind::String || name->kind != Value::Kind::String)
            fail("STACK_GLOBAL needs two strings");
          push(make_string(Value::Kind::Global, module->s + "." + name->s));
          break;
        }
        case 'R': {                                                          // REDUCE
          auto args = pop();
          auto callable = pop();
          push(reduce(*callable, *args));
          break;
        }
        case 0x81: {                                                         // NEWOBJ
          auto args = pop();
          auto cls = pop();
          push(new_object(*cls));
          break;
        }
        case 0x92: {                                                         // NEWOBJ_EX
          pop();
          pop();
          auto cls = pop();
          push(new_object(*cls));
          break;
        }
        case 'b': {                                                          // BUILD
          auto state = pop();
          build(*top(), *state);
          break;
        }
        case 'Q': push(persistent(*pop())); break;                           // BINPERSID
        case 'q': memo_[uint_le(1)] = top(); break;                          // BINPUT
        case 'r': memo_[uint_le(4)] = top(); break;                          // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;                       // MEMOIZE
        case 'h': push(memo_get(uint_le(1))); break;                         // BINGET
        case 'j': push(memo_get(uint_le(4))); break;                         // LONG_BINGET
        case '0': pop(); break;                                              // POP
        case '1': pop_mark(); break;                                         // POP_MARK
        case '2': push(top()); break;                                        // DUP
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex +
               " (only the binary protocols that torch.save writes are read)");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(where_ + " byte " + std::to_string(op_pos_) + ": " + why);
  }
  std::string take(uint64_t n) {
    if (n > d_.size() - pos_) fail("truncated pickle (needs " + std::to_string(n) + " more bytes)");
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint8_t u8() {
    if (pos_ >= d_.size()) fail("truncated pickle (no STOP opcode)");
    return static_cast<uint8_t>(d_[pos_++]);
  }
  uint64_t uint_le(int n) {
    const std::string b = take(n);
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[k]);
    return v;
  }
  std::string line() {
    const auto nl = d_.find('\n', pos_);
    if (nl == std::string::npos) fail("truncated pickle (unterminated GLOBAL)");
    std::string s = d_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }
  // LONG1/LONG4: little-endian two's complement of n bytes.
  ValuePtr long_int(uint64_t n) {
    const std::string b = take(n);
    if (n > 8) return skipped("integer wider than 64 bits");
    uint64_t v = 0;
    for (int k = static_cast<int>(n) - 1; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[k]);
    if (n > 0 && n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);
    return make_int(static_cast<int64_t>(v));
  }

  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("pop from an empty stack");
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const ValuePtr& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("empty stack");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  ValuePtr memo_get(uint64_t i) {
    auto it = memo_.find(i);
    if (it == memo_.end()) fail("memo entry " + std::to_string(i) + " was never stored");
    return it->second;
  }

  // Items of a skipped object (a dict or list subclass) are dropped with it.
  void set_items(Value& target, const std::vector<ValuePtr>& kv) {
    if (kv.size() % 2) fail("odd number of SETITEMS values");
    if (target.kind == Value::Kind::Skipped) return;
    if (target.kind != Value::Kind::Dict) fail("SETITEM on " + describe(target));
    for (size_t k = 0; k < kv.size(); k += 2) target.entries.emplace_back(kv[k], kv[k + 1]);
  }
  void append(Value& target, const std::vector<ValuePtr>& items) {
    if (target.kind == Value::Kind::Skipped) return;
    if (target.kind != Value::Kind::List) fail("APPEND to " + describe(target));
    target.items.insert(target.items.end(), items.begin(), items.end());
  }

  ValuePtr new_object(const Value& cls) {
    if (cls.kind == Value::Kind::Global && cls.s == "argparse.Namespace")
      return make_dict("argparse.Namespace");
    return skipped("instance of " + (cls.kind == Value::Kind::Global ? cls.s : describe(cls)) +
                   ", not in the allow-list");
  }

  // Only a Namespace takes its state (its fields); the attributes of an OrderedDict
  // (the state dict's _metadata) and of skipped objects carry nothing we read.
  void build(Value& obj, const Value& state) {
    if (obj.kind != Value::Kind::Dict || obj.cls != "argparse.Namespace") return;
    const Value* fields = &state;
    if (state.kind == Value::Kind::Tuple && state.items.size() == 2) fields = state.items[0].get();
    if (fields->kind == Value::Kind::Dict)
      obj.entries.insert(obj.entries.end(), fields->entries.begin(), fields->entries.end());
  }

  // torch.save's persistent id: ('storage', storage_type, key, location, numel).
  ValuePtr persistent(const Value& pid) {
    const auto& a = pid.items;
    if (pid.kind != Value::Kind::Tuple || a.size() != 5 || a[0]->kind != Value::Kind::String ||
        a[0]->s != "storage")
      return skipped("persistent id other than a torch storage");
    if (a[1]->kind != Value::Kind::Global) return skipped("storage of unknown type");
    const auto dtype = storage_dtype(a[1]->s);
    if (!dtype) return skipped("storage of unsupported type " + a[1]->s);
    if (a[2]->kind != Value::Kind::String || a[4]->kind != Value::Kind::Int || a[4]->i < 0)
      return skipped("malformed storage persistent id");
    auto v = make(Value::Kind::Storage);
    v->tensor.storage_key = a[2]->s;
    v->tensor.dtype = *dtype;
    v->tensor.storage_numel = a[4]->i;
    return v;
  }

  const std::string& d_;
  std::string where_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
};

// ---- storages and tensors ----------------------------------------------------------------

class TensorLoader {
 public:
  TensorLoader(ZipArchive& zip, std::string prefix) : zip_(zip), prefix_(std::move(prefix)) {}

  // A contiguous tensor owning its memory; `name` is the state-dict key for messages.
  at::Tensor tensor(const std::string& name, const Value& v) {
    const auto bad = [&](const std::string& why) {
      return file_error(zip_.path(), "tensor '" + name + "': " + why);
    };
    if (v.kind != Value::Kind::Tensor)
      throw bad("expected a tensor, found " + describe(v));
    const TensorRef& t = v.tensor;
    // Largest element index the view touches, overflow-checked.
    int64_t last = t.offset, numel = 1;
    bool ok = t.offset >= 0;
    for (size_t d = 0; d < t.sizes.size() && ok; ++d) {
      ok = t.sizes[d] >= 0 && t.strides[d] >= 0 &&
           !__builtin_mul_overflow(numel, t.sizes[d], &numel);
      int64_t reach = 0;
      if (ok && t.sizes[d] > 0)
        ok = !__builtin_mul_overflow(t.sizes[d] - 1, t.strides[d], &reach) &&
             !__builtin_add_overflow(last, reach, &last);
    }
    if (!ok) throw bad("negative or overflowing size/stride/offset");
    if (numel > 0 && last >= t.storage_numel)
      throw bad("view (offset " + std::to_string(t.offset) + ") reaches element " +
                std::to_string(last) + " of a " + std::to_string(t.storage_numel) +
                "-element storage");
    const at::Tensor& s = storage(name, t);
    return s.as_strided(t.sizes, t.strides, t.offset).clone(at::MemoryFormat::Contiguous);
  }

 private:
  // Loaded once per key: views of one storage (shared or non-contiguous) read it once.
  const at::Tensor& storage(const std::string& name, const TensorRef& t) {
    auto it = cache_.find(t.storage_key);
    if (it != cache_.end()) {
      if (it->second.scalar_type() != t.dtype || it->second.numel() != t.storage_numel)
        throw file_error(zip_.path(), "tensor '" + name + "': storage '" + t.storage_key +
                                          "' is referenced with two different types");
      return it->second;
    }
    const std::string entry_name = prefix_ + "data/" + t.storage_key;
    const ZipEntry* e = zip_.find(entry_name);
    if (!e)
      throw file_error(zip_.path(), "tensor '" + name + "': storage entry '" + entry_name +
                                        "' is missing from the archive");
    const uint64_t need = static_cast<uint64_t>(t.storage_numel) * c10::elementSize(t.dtype);
    if (e->size != need)
      throw file_error(zip_.path(), "tensor '" + name + "': storage entry '" + entry_name +
                                        "' holds " + std::to_string(e->size) + " bytes, but " +
                                        std::to_string(t.storage_numel) + " elements of " +
                                        c10::toString(t.dtype) + " need " + std::to_string(need));
    at::Tensor s = at::empty({t.storage_numel}, at::TensorOptions().dtype(t.dtype));
    zip_.read_into(*e, s.data_ptr());
    return cache_.emplace(t.storage_key, std::move(s)).first->second;
  }

  ZipArchive& zip_;
  std::string prefix_;
  std::map<std::string, at::Tensor> cache_;
};

// ---- checkpoint structure ----------------------------------------------------------------

// Simple values as JSON; nullopt for tensors, skipped objects and anything containing them.
// A Namespace keeps just its simple fields. Depth-limited: a pickle can build cycles.
std::optional<nlohmann::json> simple_json(const Value& v, int depth = 0) {
  if (depth > 16) return std::nullopt;
  switch (v.kind) {
    case Value::Kind::None: return nlohmann::json(nullptr);
    case Value::Kind::Bool: return nlohmann::json(v.b);
    case Value::Kind::Int: return nlohmann::json(v.i);
    case Value::Kind::Float: return nlohmann::json(v.f);
    case Value::Kind::String: return nlohmann::json(v.s);
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      auto arr = nlohmann::json::array();
      for (const auto& x : v.items) {
        auto j = simple_json(*x, depth + 1);
        if (!j) return std::nullopt;
        arr.push_back(std::move(*j));
      }
      return arr;
    }
    case Value::Kind::Dict: {
      auto obj = nlohmann::json::object();
      const bool lenient = v.cls == "argparse.Namespace";
      for (const auto& [k, x] : v.entries) {
        auto j = k->kind == Value::Kind::String ? simple_json(*x, depth + 1) : std::nullopt;
        if (j)
          obj[k->s] = std::move(*j);
        else if (!lenient)
          return std::nullopt;
      }
      return obj;
    }
    default: return std::nullopt;
  }
}

bool is_plain_state_dict(const Value& v) {
  if (v.kind != Value::Kind::Dict || v.entries.empty()) return false;
  for (const auto& [k, x] : v.entries)
    if (k->kind != Value::Kind::String || x->kind != Value::Kind::Tensor) return false;
  return true;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string detect_layout(const std::map<std::string, at::Tensor>& state,
                          const std::string& path) {
  bool sam = false;
  for (const auto& [k, t] : state) {
    if (starts_with(k, "lora_sam.") || starts_with(k, "bidatt.")) return "msam";
    sam = sam || starts_with(k, "image_encoder.") || starts_with(k, "prompt_encoder.") ||
          starts_with(k, "mask_decoder.");
  }
  if (sam) return "sam_med3d";
  throw file_error(path, "state dict has neither SAM-Med3D keys (image_encoder.*, "
                         "prompt_encoder.*, mask_decoder.*) nor M-SAM keys (lora_sam.sam.*, "
                         "bidatt.*)" +
                             (state.empty() ? std::string(": it is empty")
                                            : "; first key '" + state.begin()->first + "'"));
}

bool looks_like_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[9];
  if (!in.read(head, 9)) return false;
  return head[8] == '{';
}

}  // namespace

PthCheckpoint read_pth(const std::string& path) {
  ZipArchive zip(path);
  // torch.save names the top folder after the file it first wrote; it varies.
  std::string prefix;
  for (const auto& e : zip.entries()) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = e.name.substr(0, slash + 1);
      break;
    }
  }
  if (prefix.empty())
    throw file_error(path, "ZIP archive has no <folder>/data.pkl: not a torch.save checkpoint");
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    const std::string order = zip.read(bo->name);
    if (order != "little")
      throw file_error(path, "byteorder '" + order + "' is not supported (only little-endian)");
  }
  const std::string pickle = zip.read(prefix + "data.pkl");
  const ValuePtr root = Unpickler(pickle, path + ": " + prefix + "data.pkl").load();
  if (root->kind != Value::Kind::Dict)
    throw file_error(path, "checkpoint is " + describe(*root) + ", not a dict");

  ValuePtr state = dict_get(*root, "model_state_dict");
  if (!state) state = dict_get(*root, "state_dict");
  if (!state && is_plain_state_dict(*root)) state = root;
  if (!state)
    throw file_error(path, "no 'model_state_dict' or 'state_dict' entry, and the top-level dict "
                           "is not a plain state dict");
  if (state->kind != Value::Kind::Dict)
    throw file_error(path, "the model state dict is " + describe(*state) + ", not a dict");

  PthCheckpoint out;
  out.source = path;
  TensorLoader loader(zip, prefix);
  for (const auto& [k, v] : state->entries) {
    if (k->kind != Value::Kind::String)
      throw file_error(path, "state dict key is " + describe(*k) + ", not a string");
    out.state[k->s] = loader.tensor(k->s, *v);
  }
  out.layout = detect_layout(out.state, path);
  if (state != root)
    for (const auto& [k, v] : root->entries)
      if (k->kind == Value::Kind::String && v != state)
        if (auto j = simple_json(*v)) out.info[k->s] = std::move(*j);
  return out;
}

std::map<std::string, at::Tensor> to_msam_keys(const std::map<std::string, at::Tensor>& state,
                                               const std::string& layout) {
  if (layout == "sam_med3d") return state;
  if (layout != "msam") throw Error("to_msam_keys: unknown layout '" + layout + "'");
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, t] : state) {
    std::string name;
    if (starts_with(k, "lora_sam.sam."))
      name = k.substr(std::strlen("lora_sam.sam."));
    else if (starts_with(k, "bidatt."))
      name = "adapter." + k.substr(std::strlen("bidatt."));
    else
      throw Error("M-SAM state dict key '" + k + "' is neither lora_sam.sam.* nor bidatt.*");
    if (!out.emplace(name, t).second)
      throw Error("M-SAM state dict keys collide on '" + name + "'");
  }
  return out;
}

ConvertSummary convert_checkpoint(const std::string& in, const std::string& out) {
  ConvertSummary summary;
  if (looks_like_safetensors(in)) {
    const TensorFile f = read_safetensors(in);  // validates it
    summary.already_safetensors = true;
    summary.tensors = f.tensors.size();
    for (const auto& [k, t] : f.tensors) summary.parameters += t.numel();
    return summary;
  }
  PthCheckpoint ckpt = read_pth(in);
  const auto tensors = to_msam_keys(ckpt.state, ckpt.layout);
  std::map<std::string, std::string> metadata{
      {"source", in}, {"layout", ckpt.layout}, {"info", ckpt.info.dump()}};
  if (ckpt.info.contains("epoch")) metadata["epoch"] = ckpt.info["epoch"].dump();
  write_safetensors(out, tensors, metadata);
  summary.layout = ckpt.layout;
  summary.tensors = tensors.size();
  for (const auto& [k, t] : tensors) summary.parameters += t.numel();
  summary.info = std::move(ckpt.info);
  return summary;
}

}  // namespace msam::io
