#include "msam/train/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <numeric>
#include <sstream>

#include "msam/common/error.h"

namespace msam::train {

namespace {

template <class E>
const std::vector<std::pair<E, std::string>>& enum_names();

template <>
const std::vector<std::pair<Modality, std::string>>& enum_names() {
  static const std::vector<std::pair<Modality, std::string>> v{{Modality::kCT, "ct"},
                                                               {Modality::kMR, "mr"}};
  return v;
}
template <>
const std::vector<std::pair<interaction::ClickProtocol, std::string>>& enum_names() {
  static const std::vector<std::pair<interaction::ClickProtocol, std::string>> v(
      std::begin(interaction::kClickProtocolNames), std::end(interaction::kClickProtocolNames));
  return v;
}
template <>
const std::vector<std::pair<LossKind, std::string>>& enum_names() {
  static const std::vector<std::pair<LossKind, std::string>> v{{LossKind::kDice, "dice"},
                                                               {LossKind::kDiceBce, "dice_bce"}};
  return v;
}
template <>
const std::vector<std::pair<LossReduce, std::string>>& enum_names() {
  static const std::vector<std::pair<LossReduce, std::string>> v{{LossReduce::kSum, "sum"},
                                                                 {LossReduce::kLast, "last"}};
  return v;
}
template <>
const std::vector<std::pair<Freeze, std::string>>& enum_names() {
  static const std::vector<std::pair<Freeze, std::string>> v{{Freeze::kEncoder, "encoder"},
                                                             {Freeze::kNone, "none"}};
  return v;
}
template <>
const std::vector<std::pair<Precision, std::string>>& enum_names() {
  static const std::vector<std::pair<Precision, std::string>> v{
      {Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}, {Precision::kFp16, "fp16"}};
  return v;
}
template <>
const std::vector<std::pair<DeviceKind, std::string>>& enum_names() {
  static const std::vector<std::pair<DeviceKind, std::string>> v{{DeviceKind::kCpu, "cpu"},
                                                                 {DeviceKind::kCuda, "cuda"}};
  return v;
}

template <>
const std::vector<std::pair<model::DensePeAxes, std::string>>& enum_names() {
  static const std::vector<std::pair<model::DensePeAxes, std::string>> v(
      std::begin(model::kDensePeAxesNames), std::end(model::kDensePeAxesNames));
  return v;
}

template <class E>
const std::string& enum_name(E e) {
  for (const auto& [value, text] : enum_names<E>())
    if (value == e) return text;
  throw Error("invalid enum value");
}

std::string number(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);  // shortest text that reads back exactly
  return std::string(buf, res.ptr);
}

// Throws "<source>: <key>: <problem>" when a check fails.
struct Check {
  const std::string& source;
  void require(bool ok, const std::string& key, const std::string& problem) const {
    if (!ok) throw file_error(source, key + ": " + problem);
  }
};

}  // namespace

c10::ScalarType amp_dtype(Precision p) {
  switch (p) {
    case Precision::kBf16: return c10::kBFloat16;
    case Precision::kFp16: return c10::kHalf;
    case Precision::kFp32: break;
  }
  return c10::kFloat;
}

const char* name(Precision p) { return enum_name(p).c_str(); }

Precision parse_precision(const std::string& text, const std::string& source) {
  std::string known;
  for (const auto& [value, spelling] : enum_names<Precision>()) {
    if (text == spelling) return value;
    known += (known.empty() ? "" : ", ") + spelling;
  }
  throw file_error(source, "precision '" + text + "' is not one of " + known);
}

void validate(const Config& c, const std::string& source) {
  const Check check{source};
  auto positive = [&](int64_t v, const std::string& key) {
    check.require(v > 0, key, "must be > 0, got " + std::to_string(v));
  };
  auto non_negative = [&](int64_t v, const std::string& key) {
    check.require(v >= 0, key, "must be >= 0, got " + std::to_string(v));
  };
  auto finite = [&](double v, const std::string& key) {
    check.require(std::isfinite(v), key, "must be a finite number, got " + number(v));
  };
  auto non_negative_mm = [&](double v, const std::string& key) {
    check.require(std::isfinite(v) && v >= 0, key, "must be >= 0 mm, got " + number(v));
  };
  auto probability = [&](double v, const std::string& key) {
    check.require(std::isfinite(v) && v >= 0 && v <= 1, key, "must be a probability in [0, 1], got " + number(v));
  };

  // data
  check.require(!c.data.datasets.empty(), "data.datasets", "at least one dataset is required");
  for (size_t i = 0; i < c.data.datasets.size(); ++i) {
    const auto& d = c.data.datasets[i];
    const std::string key = "data.datasets." + std::to_string(i);
    const int sources = !d.root.empty() + !d.dataset_json.empty() + !d.pairs.empty();
    check.require(sources == 1, key,
                  "give exactly one of root, dataset_json or pairs (got " +
                      std::to_string(sources) + ")");
    check.require(d.name.find('/') == std::string::npos, key + ".name",
                  "must not contain '/' (it is the first part of each case id), got '" +
                      d.name + "'");
    check.require(d.image_pattern.empty() == d.label_pattern.empty(), key,
                  "give both image_pattern and label_pattern, or neither");
    for (const auto* pattern : {&d.image_pattern, &d.label_pattern})
      check.require(pattern->empty() || pattern->find("{case}") != std::string::npos,
                    key + (pattern == &d.image_pattern ? ".image_pattern" : ".label_pattern"),
                    "must hold {case} where each case's name goes, got '" + *pattern + "'");
    check.require(d.image_pattern.empty() || !d.root.empty(), key,
                  "image_pattern and label_pattern are read under a root folder");
    for (size_t j = 0; j < d.pairs.size(); ++j)
      check.require(!d.pairs[j].first.empty() && !d.pairs[j].second.empty(),
                    key + ".pairs." + std::to_string(j), "needs both image and label paths");
    for (int64_t label : d.target_labels)
      check.require(label > 0, key + ".target_labels",
                    "label values must be > 0 (0 is background), got " + std::to_string(label));
  }
  double ratio_sum = 0;
  for (double r : c.data.split.ratios) {
    finite(r, "data.split.ratios");
    check.require(r >= 0, "data.split.ratios", "ratios must be >= 0, got " + number(r));
    ratio_sum += r;
  }
  check.require(std::abs(ratio_sum - 1.0) < 1e-6, "data.split.ratios",
                "train/val/test ratios must sum to 1, they sum to " + number(ratio_sum));
  check.require(c.data.split.ratios[0] > 0, "data.split.ratios", "the train ratio must be > 0");
  non_negative(c.data.split.seed, "data.split.seed");
  if (c.data.spacing)
    for (double s : *c.data.spacing)
      check.require(std::isfinite(s) && s > 0, "data.spacing",
                    "spacings must be > 0 mm, got " + number(s));
  non_negative(c.data.min_label_voxels, "data.min_label_voxels");
  positive(c.data.roi, "data.roi");
  const auto& aug = c.data.augment;
  check.require(std::isfinite(aug.rotation_degrees) && aug.rotation_degrees >= 0 && aug.rotation_degrees <= 180,
                "data.rotation", "must be in [0, 180] degrees, got " + number(aug.rotation_degrees));
  check.require(std::isfinite(aug.zoom) && aug.zoom >= 0 && aug.zoom < 1, "data.zoom",
                "must be in [0, 1) (a factor 1 ± it), got " + number(aug.zoom));
  non_negative_mm(aug.elastic, "data.elastic");
  check.require(std::isfinite(aug.elastic_spacing) && aug.elastic_spacing > 0, "data.elastic_spacing",
                "must be > 0 mm, got " + number(aug.elastic_spacing));
  check.require(std::isfinite(aug.gamma) && aug.gamma >= 0, "data.gamma",
                "must be >= 0 (γ in [1/(1 + gamma), 1 + gamma]), got " + number(aug.gamma));
  check.require(std::isfinite(aug.intensity_scale) && aug.intensity_scale >= 0 && aug.intensity_scale < 1,
                "data.intensity_scale",
                "must be in [0, 1) (a factor 1 ± it), got " + number(aug.intensity_scale));
  check.require(std::isfinite(aug.intensity_shift) && aug.intensity_shift >= 0,
                "data.intensity_shift", "must be >= 0, got " + number(aug.intensity_shift));
  check.require(std::isfinite(aug.bias_field) && aug.bias_field >= 0, "data.bias_field",
                "must be >= 0 (coefficients uniform in ± it), got " + number(aug.bias_field));
  probability(aug.distractor, "data.distractor");
  non_negative_mm(aug.distractor_gap, "data.distractor_gap");
  non_negative(c.data.workers, "data.workers");
  non_negative(c.data.prefetch, "data.prefetch");

  // model: the architecture checks itself, naming the same keys
  try {
    c.model.architecture.validate();
  } catch (const Error& e) {
    throw file_error(source, e.what());
  }
  const int64_t img = c.model.architecture.encoder.img_size;
  check.require(c.data.roi == img, "data.roi",
                "the crop size (" + std::to_string(c.data.roi) +
                    ") must equal the model input size model.encoder.img (" +
                    std::to_string(img) + ")");
  if (!c.model.checkpoint.empty()) {
    const auto& p = c.model.checkpoint;
    auto ends = [&](const std::string& s) {
      return p.size() >= s.size() && p.compare(p.size() - s.size(), s.size(), s) == 0;
    };
    check.require(ends(".pth") || ends(".pt") || ends(".safetensors"), "model.checkpoint",
                  "'" + p + "' is neither a .pth/.pt nor a .safetensors file");
  }

  // loop, loss
  positive(c.loop.iterations, "loop.iterations");
  finite(c.loop.threshold, "loop.threshold");
  probability(c.loop.mask_perturbation, "loop.mask_perturbation");

  // optim
  finite(c.optim.lr, "optim.lr");
  check.require(c.optim.lr > 0, "optim.lr", "must be > 0, got " + number(c.optim.lr));
  for (double b : c.optim.betas)
    check.require(b >= 0 && b < 1, "optim.betas", "betas must be in [0, 1), got " + number(b));
  check.require(std::isfinite(c.optim.eps) && c.optim.eps > 0, "optim.eps",
                "must be > 0, got " + number(c.optim.eps));
  check.require(std::isfinite(c.optim.weight_decay) && c.optim.weight_decay >= 0,
                "optim.weight_decay", "must be >= 0, got " + number(c.optim.weight_decay));
  check.require(std::isfinite(c.optim.clip_grad_norm) && c.optim.clip_grad_norm >= 0,
                "optim.clip_grad_norm", "must be >= 0 (0 = off), got " + number(c.optim.clip_grad_norm));
  const auto& m = c.optim.lr_mult;
  for (const auto& [v, key] : std::initializer_list<std::pair<double, const char*>>{
           {m.image_encoder, "image_encoder"}, {m.lora, "lora"},
                               {m.adapter, "adapter"}, {m.prompt_encoder, "prompt_encoder"},
                               {m.mask_decoder, "mask_decoder"}})
    check.require(std::isfinite(v) && v >= 0, std::string("optim.lr_mult.") + key,
                  "must be >= 0, got " + number(v));

  // schedule
  for (size_t i = 0; i < c.schedule.milestones.size(); ++i) {
    const int64_t ms = c.schedule.milestones[i];
    check.require(ms > 0, "schedule.milestones", "epochs must be > 0, got " + std::to_string(ms));
    check.require(i == 0 || ms > c.schedule.milestones[i - 1], "schedule.milestones",
                  "must be strictly increasing");
  }
  check.require(std::isfinite(c.schedule.gamma) && c.schedule.gamma > 0, "schedule.gamma",
                "must be > 0, got " + number(c.schedule.gamma));
  non_negative(c.schedule.warmup_epochs, "schedule.warmup_epochs");

  // dist
  check.require(std::isfinite(c.dist.timeout) && c.dist.timeout > 0, "dist.timeout",
                "must be > 0 seconds, got " + number(c.dist.timeout));
  check.require(std::isfinite(c.dist.bucket_mb) && c.dist.bucket_mb > 0, "dist.bucket_mb",
                "must be > 0 MiB, got " + number(c.dist.bucket_mb));

  // run
  // Autocast is a no-op on the CPU here, so a reduced precision there would silently be fp32.
  check.require(c.precision == Precision::kFp32 || c.device == DeviceKind::kCuda, "precision",
                enum_name(c.precision) + " needs device: cuda (the CPU path runs fp32)");
  positive(c.batch_size, "batch_size");
  positive(c.epochs, "epochs");
  positive(c.val_every, "val_every");
  positive(c.save_every, "save_every");
  check.require(!c.output.empty(), "output", "an output folder is required");
  non_negative(c.seed, "seed");
  non_negative(c.threads, "threads");
}

#if MSAM_HAVE_YAML

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Null: return "nothing";
    default: return "'" + n.Scalar() + "'";
  }
}

// Reads one YAML map into config fields; every key it is asked about becomes "known", and
// finish() rejects the rest. The same field list (see visit below) drives the Writer.
class Reader {
 public:
  Reader(YAML::Node node, std::string prefix, const std::string& source)
      : node_(std::move(node)), prefix_(std::move(prefix)), source_(source) {}

  template <class T>
  void operator()(const char* key, T& value) {
    known_.push_back(key);
    const YAML::Node& self = node_;
    const YAML::Node n = self[key];
    if (!n.IsDefined()) return;
    read(n, value, prefix_ + key);
  }

  template <class F>
  void section(const char* key, F fn) {
    known_.push_back(key);
    const YAML::Node& self = node_;
    const YAML::Node n = self[key];
    if (!n.IsDefined() || n.IsNull()) return;
    if (!n.IsMap()) fail(prefix_ + key, "expected a map, got " + describe(n));
    Reader sub(n, prefix_ + key + ".", source_);
    fn(sub);
    sub.finish();
  }

  template <class T, class F>
  void list(const char* key, std::vector<T>& items, F fn) {
    known_.push_back(key);
    const YAML::Node& self = node_;
    const YAML::Node n = self[key];
    if (!n.IsDefined()) return;
    items.clear();
    if (n.IsNull()) return;
    if (!n.IsSequence()) fail(prefix_ + key, "expected a list, got " + describe(n));
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string path = prefix_ + key + "." + std::to_string(i);
      if (!n[i].IsMap()) fail(path, "expected a map, got " + describe(n[i]));
      Reader sub(n[i], path + ".", source_);
      T item{};
      fn(sub, item);
      sub.finish();
      items.push_back(std::move(item));
    }
  }

  void finish() const {
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string nearest;
      size_t best = std::string::npos;
      for (const auto& k : known_) {
        const size_t d = edit_distance(key, k);
        if (d < best) best = d, nearest = k;
      }
      std::string msg = "unknown key '" + prefix_ + key + "'";
      if (best <= std::max<size_t>(3, key.size() / 2))
        msg += " (did you mean '" + prefix_ + nearest + "'?)";
      msg += "; valid keys" +
             (prefix_.empty() ? std::string()
                              : " under '" + prefix_.substr(0, prefix_.size() - 1) + "'") +
             ": " + join(known_);
      throw file_error(source_, msg);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw file_error(source_, key + ": " + problem);
  }

  template <class T>
  T scalar(const YAML::Node& n, const std::string& key, const char* what) const {
    if (!n.IsScalar()) fail(key, std::string("expected ") + what + ", got " + describe(n));
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(key, std::string("expected ") + what + ", got " + describe(n));
    }
  }

  void read(const YAML::Node& n, bool& v, const std::string& key) const {
    v = scalar<bool>(n, key, "true or false");
  }
  void read(const YAML::Node& n, int64_t& v, const std::string& key) const {
    v = scalar<int64_t>(n, key, "an integer");
  }
  void read(const YAML::Node& n, double& v, const std::string& key) const {
    v = scalar<double>(n, key, "a number");
  }
  void read(const YAML::Node& n, std::string& v, const std::string& key) const {
    // A file pattern such as {case}/{case}_flair.nii.gz, unquoted, is a YAML map.
    if (n.IsMap() && n.Style() == YAML::EmitterStyle::Flow)
      fail(key, "expected a string, got a map: YAML reads a value that starts with '{' as one; "
                "put it in quotes");
    v = n.IsNull() ? std::string() : scalar<std::string>(n, key, "a string");
  }
  void read(const YAML::Node& n, std::vector<int64_t>& v, const std::string& key) const {
    if (!n.IsSequence()) fail(key, "expected a list of integers, got " + describe(n));
    v.clear();
    for (size_t i = 0; i < n.size(); ++i) v.push_back(scalar<int64_t>(n[i], key, "integers"));
  }
  template <size_t N>
  void read(const YAML::Node& n, std::array<double, N>& v, const std::string& key) const {
    if (!n.IsSequence() || n.size() != N)
      fail(key, "expected a list of " + std::to_string(N) + " numbers, got " + describe(n) +
                    (n.IsSequence() ? " of " + std::to_string(n.size()) : ""));
    for (size_t i = 0; i < N; ++i) v[i] = scalar<double>(n[i], key, "numbers");
  }
  template <size_t N>
  void read(const YAML::Node& n, std::optional<std::array<double, N>>& v,
            const std::string& key) const {
    if (n.IsNull()) {
      v.reset();
      return;
    }
    std::array<double, N> a{};
    read(n, a, key);
    v = a;
  }
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  void read(const YAML::Node& n, E& v, const std::string& key) const {
    const auto text = scalar<std::string>(n, key, "a name");
    std::vector<std::string> options;
    for (const auto& [value, name] : enum_names<E>()) {
      if (name == text) {
        v = value;
        return;
      }
      options.push_back(name);
    }
    fail(key, "'" + text + "' is not one of " + join(options));
  }

  YAML::Node node_;
  std::string prefix_;
  const std::string& source_;
  std::vector<std::string> known_;
};

// Builds the YAML map of the same fields.
class Writer {
 public:
  YAML::Node node{YAML::NodeType::Map};

  template <class T>
  void operator()(const char* key, const T& value) {
    node[key] = make(value);
  }
  template <class F>
  void section(const char* key, F fn) {
    Writer sub;
    fn(sub);
    node[key] = sub.node;
  }
  template <class T, class F>
  void list(const char* key, std::vector<T>& items, F fn) {
    YAML::Node seq(YAML::NodeType::Sequence);
    for (auto& item : items) {
      Writer sub;
      fn(sub, item);
      seq.push_back(sub.node);
    }
    node[key] = seq;
  }

 private:
  static YAML::Node make(bool v) { return YAML::Node(v); }
  static YAML::Node make(int64_t v) { return YAML::Node(v); }
  static YAML::Node make(double v) { return YAML::Node(number(v)); }
  static YAML::Node make(const std::string& v) { return YAML::Node(v); }
  static YAML::Node flow(YAML::Node n) {
    n.SetStyle(YAML::EmitterStyle::Flow);
    return n;
  }
  static YAML::Node make(const std::vector<int64_t>& v) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (auto x : v) n.push_back(x);
    return flow(n);
  }
  template <size_t N>
  static YAML::Node make(const std::array<double, N>& v) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (auto x : v) n.push_back(number(x));
    return flow(n);
  }
  template <size_t N>
  static YAML::Node make(const std::optional<std::array<double, N>>& v) {
    return v ? make(*v) : YAML::Node(YAML::NodeType::Null);
  }
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  static YAML::Node make(E v) {
    return YAML::Node(enum_name(v));
  }
};

// The one list of config keys, shared by reading and writing.
template <class V>
void visit(V& v, Config& c) {
  v.section("data", [&](V& s) {
    auto& d = c.data;
    s.list("datasets", d.datasets, [](V& ds, DatasetSpec& spec) {
      ds("name", spec.name);
      ds("root", spec.root);
      ds("dataset_json", spec.dataset_json);
      ds.list("pairs", spec.pairs, [](V& p, std::pair<std::string, std::string>& pair) {
        p("image", pair.first);
        p("label", pair.second);
      });
      ds("image_pattern", spec.image_pattern);
      ds("label_pattern", spec.label_pattern);
      ds("channel", spec.channel);
      ds("target_labels", spec.target_labels);
      ds("modality", spec.modality);
    });
    s("cache_dir", d.cache_dir);
    s.section("split", [&](V& sp) {
      sp("file", d.split.file);
      sp("seed", d.split.seed);
      sp("ratios", d.split.ratios);
    });
    s("spacing", d.spacing);
    s("min_label_voxels", d.min_label_voxels);
    s("copy_image_geometry", d.copy_image_geometry);
    s("roi", d.roi);
    s("random_flip", d.augment.random_flips);
    s("rotation", d.augment.rotation_degrees);
    s("zoom", d.augment.zoom);
    s("elastic", d.augment.elastic);
    s("elastic_spacing", d.augment.elastic_spacing);
    s("gamma", d.augment.gamma);
    s("intensity_scale", d.augment.intensity_scale);
    s("intensity_shift", d.augment.intensity_shift);
    s("bias_field", d.augment.bias_field);
    s("distractor", d.augment.distractor);
    s("distractor_gap", d.augment.distractor_gap);
    s("workers", d.workers);
    s("prefetch", d.prefetch);
  });
  v.section("model", [&](V& s) {
    model::visit(s, c.model.architecture);
    s("checkpoint", c.model.checkpoint);
    s("freeze", c.model.freeze);
  });
  v.section("loop", [&](V& s) {
    s("iterations", c.loop.iterations);
    s("protocol", c.loop.protocol);
    s("multi_click", c.loop.multi_click);
    s("threshold", c.loop.threshold);
    s("mask_perturbation", c.loop.mask_perturbation);
  });
  v.section("loss", [&](V& s) {
    s("kind", c.loss.kind);
    s("reduce", c.loss.reduce);
  });
  v.section("optim", [&](V& s) {
    auto& o = c.optim;
    s("lr", o.lr);
    s("betas", o.betas);
    s("eps", o.eps);
    s("weight_decay", o.weight_decay);
    s("clip_grad_norm", o.clip_grad_norm);
    s.section("lr_mult", [&](V& m) {
      m("image_encoder", o.lr_mult.image_encoder);
      m("lora", o.lr_mult.lora);
      m("adapter", o.lr_mult.adapter);
      m("prompt_encoder", o.lr_mult.prompt_encoder);
      m("mask_decoder", o.lr_mult.mask_decoder);
    });
  });
  v.section("schedule", [&](V& s) {
    s("milestones", c.schedule.milestones);
    s("gamma", c.schedule.gamma);
    s("warmup_epochs", c.schedule.warmup_epochs);
  });
  v.section("dist", [&](V& s) {
    s("timeout", c.dist.timeout);
    s("bucket_mb", c.dist.bucket_mb);
  });
  v("precision", c.precision);
  v("device", c.device);
  v("batch_size", c.batch_size);
  v("epochs", c.epochs);
  v("val_every", c.val_every);
  v("save_every", c.save_every);
  v("output", c.output);
  v("seed", c.seed);
  v("threads", c.threads);
}

}  // namespace

Config parse_config(const YAML::Node& root, const std::string& source) {
  Config c;
  if (!root.IsDefined() || root.IsNull()) {
    validate(c, source);
    return c;
  }
  if (!root.IsMap()) throw file_error(source, "expected a map of config sections");
  Reader reader(root, "", source);
  visit(reader, c);
  reader.finish();
  validate(c, source);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) throw file_error(path, "cannot open the config file");
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw file_error(path, std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& o : overrides) {
    try {
      apply_override(root, o);
    } catch (const Error& e) {
      throw file_error(path, e.what());
    }
  }
  return parse_config(root, path);
}

void apply_override(YAML::Node& root, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("--set '" + assignment + "': expected key=value, e.g. optim.lr=1e-4");
  const std::string path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw Error("--set " + path + ": the value is not valid YAML: " + e.what());
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) throw Error("--set '" + assignment + "': empty key component");
    parts.push_back(part);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  YAML::Node cur;
  cur.reset(root);
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    const std::string& part = parts[i];
    YAML::Node next;
    if (cur.IsSequence()) {
      size_t index = 0;
      auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
      if (ec != std::errc() || ptr != part.data() + part.size() || index >= cur.size())
        throw Error("--set " + path + ": '" + part + "' is not an index of the list (0.." +
                    std::to_string(cur.size()) + ")");
      if (last) {
        cur[index] = value;
        return;
      }
      next.reset(cur[index]);
    } else {
      if (cur.IsNull()) cur = YAML::Node(YAML::NodeType::Map);
      if (!cur.IsMap())
        throw Error("--set " + path + ": '" + part + "' is inside a value, not a section");
      if (last) {
        cur[part] = value;
        return;
      }
      if (!cur[part].IsDefined() || cur[part].IsNull()) cur[part] = YAML::Node(YAML::NodeType::Map);
      next.reset(cur[part]);
    }
    cur.reset(next);
  }
}

std::string to_yaml(const Config& config) {
  Config copy = config;
  Writer writer;
  visit(writer, copy);
  YAML::Emitter out;
  out << writer.node;
  return std::string(out.c_str()) + "\n";
}

#endif

}  // namespace msam::train
