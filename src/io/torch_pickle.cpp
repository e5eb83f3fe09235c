#include "msam/io/torch_pickle.h"

#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "msam/common/error.h"

namespace msam::io {
namespace {

PickleValuePtr make(PickleValue::Kind k) { return std::make_shared<PickleValue>(k); }
PickleValuePtr make_int(int64_t i) {
  auto v = make(PickleValue::Kind::Int);
  v->i = i;
  return v;
}
PickleValuePtr make_string(PickleValue::Kind k, std::string s) {
  auto v = make(k);
  v->s = std::move(s);
  return v;
}
PickleValuePtr make_dict(const std::string& cls) {
  auto v = make(PickleValue::Kind::Dict);
  v->cls = cls;
  return v;
}
PickleValuePtr skipped(const std::string& why) {
  return make_string(PickleValue::Kind::Skipped, why);
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

std::optional<std::vector<int64_t>> int_tuple(const PickleValue& v) {
  if (v.kind != PickleValue::Kind::Tuple) return std::nullopt;
  std::vector<int64_t> out;
  for (const auto& x : v.items) {
    if (x->kind != PickleValue::Kind::Int) return std::nullopt;
    out.push_back(x->i);
  }
  return out;
}

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]): recorded as a view, checked when it is materialised.
PickleValuePtr rebuild_tensor(const PickleValue& args) {
  const auto& a = args.items;
  if (args.kind == PickleValue::Kind::Tuple && !a.empty() && a[0]->kind == PickleValue::Kind::Skipped)
    return a[0];  // keeps the reason the storage was skipped
  if (args.kind != PickleValue::Kind::Tuple || a.size() < 4 || a[0]->kind != PickleValue::Kind::Storage ||
      a[1]->kind != PickleValue::Kind::Int)
    return skipped("_rebuild_tensor_v2 with unexpected arguments");
  auto sizes = int_tuple(*a[2]), strides = int_tuple(*a[3]);
  if (!sizes || !strides || sizes->size() != strides->size())
    return skipped("_rebuild_tensor_v2 with malformed size/stride");
  auto t = make(PickleValue::Kind::Tensor);
  t->tensor = a[0]->tensor;
  t->tensor.offset = a[1]->i;
  t->tensor.sizes = *sizes;
  t->tensor.strides = *strides;
  return t;
}

// REDUCE: the only callables "called" are the allow-listed ones, interpreted here;
// everything else yields a skipped object and its arguments are dropped.
PickleValuePtr reduce(const PickleValue& callable, const PickleValue& args) {
  if (callable.kind != PickleValue::Kind::Global)
    return skipped("call of " + describe(callable));
  const std::string& g = callable.s;
  const bool tuple = args.kind == PickleValue::Kind::Tuple;
  if (g == "collections.OrderedDict" && tuple && args.items.empty())
    return make_dict("collections.OrderedDict");
  if (g == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args);
  if ((g == "torch._utils._rebuild_parameter" ||
       g == "torch._utils._rebuild_parameter_with_state") &&
      tuple && !args.items.empty() &&
      (args.items[0]->kind == PickleValue::Kind::Tensor || args.items[0]->kind == PickleValue::Kind::Skipped))
    return args.items[0];
  if (is_set_type(g) && tuple) {
    auto set = make(PickleValue::Kind::List);
    if (args.items.size() == 1 && args.items[0]->kind == PickleValue::Kind::List)
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

  PickleValuePtr load() {
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
        case ']': push(make(PickleValue::Kind::List)); break;    // EMPTY_LIST
        case ')': push(make(PickleValue::Kind::Tuple)); break;   // EMPTY_TUPLE
        case 0x8f: push(make(PickleValue::Kind::List)); break;   // EMPTY_SET
        case 'N': push(make(PickleValue::Kind::None)); break;    // NONE
        case 0x88: case 0x89: {                            // NEWTRUE, NEWFALSE
          auto v = make(PickleValue::Kind::Bool);
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
          auto v = make(PickleValue::Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 0x8c: push(make_string(PickleValue::Kind::String, take(uint_le(1)))); break;
        case 'X': push(make_string(PickleValue::Kind::String, take(uint_le(4)))); break;
        case 0x8d: push(make_string(PickleValue::Kind::String, take(uint_le(8)))); break;
        case 'U': push(make_string(PickleValue::Kind::String, take(uint_le(1)))); break;
        case 'T': push(make_string(PickleValue::Kind::String, take(uint_le(4)))); break;
        case 'C': push(make_string(PickleValue::Kind::Bytes, take(uint_le(1)))); break;
        case 'B': push(make_string(PickleValue::Kind::Bytes, take(uint_le(4)))); break;
        case 0x8e: case 0x96:                                 // BINBYTES8, BYTEARRAY8
          push(make_string(PickleValue::Kind::Bytes, take(uint_le(8))));
          break;
        case 't': {                                                          // TUPLE
          auto v = make(PickleValue::Kind::Tuple);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                                   // TUPLE1-3
          auto v = make(PickleValue::Kind::Tuple);
          v->items.resize(op - 0x84);
          for (auto it = v->items.rbegin(); it != v->items.rend(); ++it) *it = pop();
          push(v);
          break;
        }
        case 'l': case 0x91: {                                      // LIST, FROZENSET
          auto v = make(PickleValue::Kind::List);
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
          push(make_string(PickleValue::Kind::Global, module + "." + line()));
          break;
        }
        case 0x93: {                                                         // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          if (module->kind != PickleValue::Kind::String || name->kind != PickleValue::Kind::String)
            fail("STACK_GLOBAL needs two strings");
          push(make_string(PickleValue::Kind::Global, module->s + "." + name->s));
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
  PickleValuePtr long_int(uint64_t n) {
    const std::string b = take(n);
    if (n > 8) return skipped("integer wider than 64 bits");
    uint64_t v = 0;
    for (int k = static_cast<int>(n) - 1; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[k]);
    if (n > 0 && n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);
    return make_int(static_cast<int64_t>(v));
  }

  void push(PickleValuePtr v) { stack_.push_back(std::move(v)); }
  PickleValuePtr pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("pop from an empty stack");
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const PickleValuePtr& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("empty stack");
    return stack_.back();
  }
  std::vector<PickleValuePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleValuePtr> items(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  PickleValuePtr memo_get(uint64_t i) {
    auto it = memo_.find(i);
    if (it == memo_.end()) fail("memo entry " + std::to_string(i) + " was never stored");
    return it->second;
  }

  // Items of a skipped object (a dict or list subclass) are dropped with it.
  void set_items(PickleValue& target, const std::vector<PickleValuePtr>& kv) {
    if (kv.size() % 2) fail("odd number of SETITEMS values");
    if (target.kind == PickleValue::Kind::Skipped) return;
    if (target.kind != PickleValue::Kind::Dict) fail("SETITEM on " + describe(target));
    for (size_t k = 0; k < kv.size(); k += 2) target.entries.emplace_back(kv[k], kv[k + 1]);
  }
  void append(PickleValue& target, const std::vector<PickleValuePtr>& items) {
    if (target.kind == PickleValue::Kind::Skipped) return;
    if (target.kind != PickleValue::Kind::List) fail("APPEND to " + describe(target));
    target.items.insert(target.items.end(), items.begin(), items.end());
  }

  PickleValuePtr new_object(const PickleValue& cls) {
    if (cls.kind == PickleValue::Kind::Global && cls.s == "argparse.Namespace")
      return make_dict("argparse.Namespace");
    return skipped("instance of " + (cls.kind == PickleValue::Kind::Global ? cls.s : describe(cls)) +
                   ", not in the allow-list");
  }

  // Only a Namespace takes its state (its fields); the attributes of an OrderedDict
  // (the state dict's _metadata) and of skipped objects carry nothing we read.
  void build(PickleValue& obj, const PickleValue& state) {
    if (obj.kind != PickleValue::Kind::Dict || obj.cls != "argparse.Namespace") return;
    const PickleValue* fields = &state;
    if (state.kind == PickleValue::Kind::Tuple && state.items.size() == 2) fields = state.items[0].get();
    if (fields->kind == PickleValue::Kind::Dict)
      obj.entries.insert(obj.entries.end(), fields->entries.begin(), fields->entries.end());
  }

  // torch.save's persistent id: ('storage', storage_type, key, location, numel).
  PickleValuePtr persistent(const PickleValue& pid) {
    const auto& a = pid.items;
    if (pid.kind != PickleValue::Kind::Tuple || a.size() != 5 || a[0]->kind != PickleValue::Kind::String ||
        a[0]->s != "storage")
      return skipped("persistent id other than a torch storage");
    if (a[1]->kind != PickleValue::Kind::Global) return skipped("storage of unknown type");
    const auto dtype = storage_dtype(a[1]->s);
    if (!dtype) return skipped("storage of unsupported type " + a[1]->s);
    if (a[2]->kind != PickleValue::Kind::String || a[4]->kind != PickleValue::Kind::Int || a[4]->i < 0)
      return skipped("malformed storage persistent id");
    auto v = make(PickleValue::Kind::Storage);
    v->tensor.storage_key = a[2]->s;
    v->tensor.dtype = *dtype;
    v->tensor.storage_numel = a[4]->i;
    return v;
  }

  const std::string& d_;
  std::string where_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<PickleValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleValuePtr> memo_;
};

}  // namespace

std::string describe(const PickleValue& v) {
  switch (v.kind) {
    case PickleValue::Kind::None: return "None";
    case PickleValue::Kind::Bool: return "a bool";
    case PickleValue::Kind::Int: return "an int";
    case PickleValue::Kind::Float: return "a float";
    case PickleValue::Kind::String: return "a string";
    case PickleValue::Kind::Bytes: return "bytes";
    case PickleValue::Kind::List: return "a list";
    case PickleValue::Kind::Tuple: return "a tuple";
    case PickleValue::Kind::Dict: return "a " + v.cls;
    case PickleValue::Kind::Global: return "the global " + v.s;
    case PickleValue::Kind::Storage: return "a storage";
    case PickleValue::Kind::Tensor: return "a tensor";
    case PickleValue::Kind::Skipped: return "a skipped object (" + v.s + ")";
  }
  return "?";
}

PickleValuePtr dict_get(const PickleValue& d, const std::string& key) {
  for (auto it = d.entries.rbegin(); it != d.entries.rend(); ++it)
    if (it->first->kind == PickleValue::Kind::String && it->first->s == key) return it->second;
  return nullptr;
}

std::optional<nlohmann::json> simple_json(const PickleValue& v, int depth) {
  if (depth > 16) return std::nullopt;
  switch (v.kind) {
    case PickleValue::Kind::None: return nlohmann::json(nullptr);
    case PickleValue::Kind::Bool: return nlohmann::json(v.b);
    case PickleValue::Kind::Int: return nlohmann::json(v.i);
    case PickleValue::Kind::Float: return nlohmann::json(v.f);
    case PickleValue::Kind::String: return nlohmann::json(v.s);
    case PickleValue::Kind::List:
    case PickleValue::Kind::Tuple: {
      auto arr = nlohmann::json::array();
      for (const auto& x : v.items) {
        auto j = simple_json(*x, depth + 1);
        if (!j) return std::nullopt;
        arr.push_back(std::move(*j));
      }
      return arr;
    }
    case PickleValue::Kind::Dict: {
      auto obj = nlohmann::json::object();
      const bool lenient = v.cls == "argparse.Namespace";
      for (const auto& [k, x] : v.entries) {
        auto j = k->kind == PickleValue::Kind::String ? simple_json(*x, depth + 1) : std::nullopt;
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

// ---- the archive ---------------------------------------------------------------------------

TorchArchive::TorchArchive(const std::string& path) : zip_(path) {
  // torch.save names the top folder after the file it first wrote; it varies.
  for (const auto& e : zip_.entries()) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix_ = e.name.substr(0, slash + 1);
      break;
    }
  }
  if (prefix_.empty())
    throw file_error(path, "ZIP archive has no <folder>/data.pkl: not a torch.save checkpoint");
  if (const ZipEntry* bo = zip_.find(prefix_ + "byteorder")) {
    const std::string order = zip_.read(bo->name);
    if (order != "little")
      throw file_error(path, "byteorder '" + order + "' is not supported (only little-endian)");
  }
  const std::string pickle = zip_.read(prefix_ + "data.pkl");
  root_ = Unpickler(pickle, path + ": " + prefix_ + "data.pkl").load();
}

at::Tensor TorchArchive::tensor(const std::string& name, const PickleValue& v) {
  const auto bad = [&](const std::string& why) {
    return file_error(zip_.path(), "tensor '" + name + "': " + why);
  };
  if (v.kind != PickleValue::Kind::Tensor)
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

const at::Tensor& TorchArchive::storage(const std::string& name, const TensorRef& t) {
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

}  // namespace msam::io
