// Built only with yaml-cpp: the GPU machine may lack it and trains from a carried cache.
#ifdef MSAM_HAVE_YAML
#include "msam/data/data_config.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "msam/common/error.h"

namespace fs = std::filesystem;

namespace msam::data {

namespace {

void check_keys(const YAML::Node& node, const std::string& where, const std::set<std::string>& allowed) {
  if (!node.IsMap()) throw Error(where + ": expected a mapping");
  for (const auto& kv : node) {
    const auto key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Error(where + "." + key + ": unknown key (expected one of: " + list + ")");
    }
  }
}

template <typename T>
T get(const YAML::Node& node, const std::string& where) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw Error(where + ": invalid value '" + YAML::Dump(node) + "'");
  }
}

std::string resolve(const std::string& base, const std::string& path) {
  const fs::path p(path);
  return p.is_absolute() ? p.string() : (fs::path(base) / p).lexically_normal().string();
}

std::array<double, 3> triple(const YAML::Node& node, const std::string& where) {
  if (node.IsScalar()) {
    const auto v = get<double>(node, where);
    return {v, v, v};
  }
  const auto v = get<std::vector<double>>(node, where);
  if (v.size() != 3) throw Error(where + ": expected 3 numbers");
  return {v[0], v[1], v[2]};
}

DatasetSpec parse_dataset(const YAML::Node& node, const std::string& base, const std::string& where) {
  check_keys(node, where, {"name", "root", "pairs", "modality", "targets"});
  DatasetSpec spec;
  if (node["name"]) spec.name = get<std::string>(node["name"], where + ".name");
  if (node["root"]) spec.root = resolve(base, get<std::string>(node["root"], where + ".root"));
  if (node["pairs"]) {
    const auto pairs = node["pairs"];
    if (!pairs.IsSequence()) throw Error(where + ".pairs: expected a list of {image, label}");
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto w = where + ".pairs[" + std::to_string(i) + "]";
      check_keys(pairs[i], w, {"image", "label"});
      if (!pairs[i]["image"] || !pairs[i]["label"]) throw Error(w + ": needs both image and label");
      spec.pairs.emplace_back(resolve(base, get<std::string>(pairs[i]["image"], w + ".image")),
                              resolve(base, get<std::string>(pairs[i]["label"], w + ".label")));
    }
  }
  if (spec.root.empty() == spec.pairs.empty()) throw Error(where + ": give exactly one of root and pairs");
  if (node["modality"]) {
    try {
      spec.modality = parse_modality(get<std::string>(node["modality"], where + ".modality"));
    } catch (const Error& e) {
      throw Error(where + ".modality: " + e.what());
    }
  }
  if (node["targets"]) {
    const auto& t = node["targets"];
    spec.targets = t.IsScalar() ? std::vector<int>{get<int>(t, where + ".targets")}
                                : get<std::vector<int>>(t, where + ".targets");
    for (int v : spec.targets)
      if (v <= 0) throw Error(where + ".targets: label value " + std::to_string(v) + " must be > 0");
  }
  return spec;
}

}  // namespace

DataConfig parse_data_config(const YAML::Node& node, const std::string& base_dir, const std::string& where) {
  check_keys(node, where,
             {"cache_dir", "split_file", "split_seed", "split_ratios", "datasets", "preprocess"});
  DataConfig c;
  if (!node["cache_dir"]) throw Error(where + ".cache_dir: required");
  c.cache_dir = resolve(base_dir, get<std::string>(node["cache_dir"], where + ".cache_dir"));
  c.split_file = node["split_file"] ? resolve(base_dir, get<std::string>(node["split_file"], where + ".split_file"))
                                    : (fs::path(c.cache_dir) / "split.json").string();
  if (node["split_seed"]) c.split_seed = get<uint64_t>(node["split_seed"], where + ".split_seed");
  if (node["split_ratios"]) c.split_ratios = triple(node["split_ratios"], where + ".split_ratios");
  const auto datasets = node["datasets"];
  if (!datasets || !datasets.IsSequence() || datasets.size() == 0)
    throw Error(where + ".datasets: required, a list of one or more datasets");
  for (size_t i = 0; i < datasets.size(); ++i)
    c.datasets.push_back(parse_dataset(datasets[i], base_dir, where + ".datasets[" + std::to_string(i) + "]"));

  if (const auto p = node["preprocess"]) {
    const auto w = where + ".preprocess";
    check_keys(p, w, {"target_spacing", "patch_size", "min_label_voxels", "on_geometry_mismatch",
                      "geometry_tolerance"});
    auto& s = c.preprocess;
    if (p["target_spacing"] && !p["target_spacing"].IsNull()) {
      s.target_spacing = triple(p["target_spacing"], w + ".target_spacing");
      for (double v : *s.target_spacing)
        if (!(v > 0)) throw Error(w + ".target_spacing: spacings must be > 0");
    }
    if (p["patch_size"]) {
      const auto t = triple(p["patch_size"], w + ".patch_size");
      for (int d = 0; d < 3; ++d) {
        if (!(t[d] >= 1) || t[d] != std::floor(t[d])) throw Error(w + ".patch_size: positive integers expected");
        s.patch_size[d] = static_cast<int64_t>(t[d]);
      }
    }
    if (p["min_label_voxels"]) s.min_label_voxels = get<int64_t>(p["min_label_voxels"], w + ".min_label_voxels");
    if (p["on_geometry_mismatch"]) {
      const auto v = get<std::string>(p["on_geometry_mismatch"], w + ".on_geometry_mismatch");
      if (v == "error")
        s.on_geometry_mismatch = GeometryMismatch::Error;
      else if (v == "copy_image_geometry")
        s.on_geometry_mismatch = GeometryMismatch::CopyImageGeometry;
      else
        throw Error(w + ".on_geometry_mismatch: '" + v + "' is not error or copy_image_geometry");
    }
    if (p["geometry_tolerance"]) s.geometry_tolerance = get<double>(p["geometry_tolerance"], w + ".geometry_tolerance");
  }
  return c;
}

DataConfig load_data_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw file_error(path, "cannot open config file");
  } catch (const YAML::Exception& e) {
    throw file_error(path, std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsMap() || !root["data"]) throw file_error(path, "no `data:` section");
  const auto base = fs::absolute(path).parent_path().string();
  return parse_data_config(root["data"], base, path + ": data");
}

}  // namespace msam::data
#endif
