#include "msam/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "msam/common/error.h"
#include "msam/common/log.h"

namespace fs = std::filesystem;

namespace msam::data {

namespace {

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts{".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"};
  return exts;
}

std::string extension_of(const std::string& file_name) {
  for (const auto& ext : image_extensions())
    if (file_name.size() > ext.size() &&
        file_name.compare(file_name.size() - ext.size(), ext.size(), ext) == 0)
      return ext;
  return "";
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A scan's name: its file name without the image extension, or its folder's name for a
// DICOM series folder ("a/b/" → "b").
std::string scan_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return strip_image_extension(p.filename().string());
}

std::vector<std::string> image_files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    // Hidden files (macOS "._case.nii.gz" resource forks) are not scans.
    if (!name.empty() && name[0] != '.' && has_image_extension(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string channel_file_suffix(int64_t channel) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "_%04lld", static_cast<long long>(channel));
  return buf;
}

// The channels a dataset.json names: the Decathlon's "modality" or nnU-Net v2's
// "channel_names", both {"0": "FLAIR", ...}.
using ChannelNames = std::map<int64_t, std::string>;

std::string describe(const ChannelNames& names) {
  std::string out;
  for (const auto& [index, name] : names)
    out += (out.empty() ? "" : ", ") + std::to_string(index) + " " + name;
  return out;
}

// nnU-Net folders: image `case_0000.ext` (more channels `case_0001.ext`, …) or `case.ext` ↔
// label `case.ext`. Every image and every label must find its partner; a stray file is an
// error rather than a silently smaller dataset.
std::vector<CaseSource> discover_folders(const fs::path& root, const std::string& name,
                                         std::optional<int64_t> channel, const ChannelNames& names) {
  const fs::path images = root / "imagesTr", labels = root / "labelsTr";
  std::map<std::string, std::string> label_by_case;  // case name → label path
  for (const auto& f : image_files_in(labels))
    label_by_case[strip_image_extension(f)] = (labels / f).string();

  // Per case: its image files by channel; -1 for a same-name image (one file for all).
  static const std::regex channel_suffix(R"(^(.*)_(\d{4})$)");
  std::map<std::string, std::map<int64_t, std::string>> images_by_case;
  for (const auto& f : image_files_in(images)) {
    std::string stem = strip_image_extension(f);
    int64_t index = -1;
    std::smatch m;
    if (!label_by_case.count(stem) && std::regex_match(stem, m, channel_suffix)) {
      stem = m[1];
      index = std::stoll(m[2]);
    }
    const auto path = (images / f).string();
    auto& files = images_by_case[stem];
    const auto clash = index < 0 ? files.begin() : files.find(index);
    if (clash != files.end() || files.count(-1))
      throw file_error(path, "second image for case '" + stem + "' (also " +
                                 (clash != files.end() ? clash->second : files[-1]) + ")");
    files[index] = path;
  }

  std::vector<CaseSource> cases;
  for (const auto& [stem, label] : label_by_case) {
    const auto ext = extension_of(label);
    auto it = images_by_case.find(stem);
    if (it == images_by_case.end())
      throw file_error(label, "no image for this label: expected " +
                                  (images / (stem + "_0000" + ext)).string() + " or " +
                                  (images / (stem + ext)).string());
    const auto& files = it->second;
    if (files.count(-1)) {  // one file: the channel is read from it
      cases.push_back({name + "/" + stem, files.at(-1), label, {}, Modality::Other, channel});
      continue;
    }
    std::string image;
    if (channel) {
      auto file = files.find(*channel);
      if (file == files.end())
        throw file_error(label, "no channel " + std::to_string(*channel) + " image for this label: expected " +
                                    (images / (stem + channel_file_suffix(*channel) + ext)).string());
      image = file->second;
    } else if (files.size() > 1 || !files.count(0)) {
      std::string found;
      for (const auto& [index, path] : files) found += (found.empty() ? "" : ", ") + channel_file_suffix(index);
      throw file_error(files.begin()->second,
                       "case '" + stem + "' has channels " + found +
                           (names.empty() ? "" : " (dataset.json: " + describe(names) + ")") +
                           ": choose one with the dataset's channel");
    } else {
      image = files.at(0);
    }
    cases.push_back({name + "/" + stem, image, label, {}, Modality::Other});
  }
  for (const auto& [stem, files] : images_by_case)
    if (!label_by_case.count(stem))
      throw file_error(files.begin()->second, "no label for this image: expected " +
                                                  (labels / (stem + extension_of(files.begin()->second))).string());
  return cases;
}

std::string json_path(const nlohmann::json& entry, const char* key, const std::string& where) {
  if (!entry.is_object() || !entry.contains(key) || !entry[key].is_string())
    throw Error(where + ": missing string \"" + key + "\"");
  return entry[key].get<std::string>();
}

nlohmann::json read_dataset_json(const std::string& json_file) {
  nlohmann::json doc;
  std::ifstream in(json_file);
  if (!in) throw file_error(json_file, "cannot open");
  try {
    in >> doc;
  } catch (const nlohmann::json::exception& e) {
    throw file_error(json_file, std::string("not valid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw file_error(json_file, "not a JSON object");
  return doc;
}

ChannelNames channel_names(const nlohmann::json& doc, const std::string& json_file) {
  ChannelNames names;
  for (const char* key : {"channel_names", "modality"}) {
    if (!doc.contains(key)) continue;
    if (!doc[key].is_object()) throw file_error(json_file, std::string("\"") + key + "\" is not an object");
    for (const auto& [index, value] : doc[key].items()) {
      if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || !value.is_string())
        throw file_error(json_file, std::string("\"") + key + "\" must map channel numbers to names, got \"" +
                                        index + "\": " + value.dump());
      names[std::stoll(index)] = value.get<std::string>();
    }
    break;
  }
  return names;
}

// The channel `spec` asks for: an index, or a name from `names` (any case).
std::optional<int64_t> resolve_channel(const std::string& spec, const ChannelNames& names,
                                       const std::string& dataset) {
  if (spec.empty()) return std::nullopt;
  if (spec.find_first_not_of("0123456789") == std::string::npos) {
    if (spec.size() > 6) throw Error("dataset '" + dataset + "': channel " + spec + " is out of range");
    return std::stoll(spec);
  }
  for (const auto& [index, name] : names)
    if (lower(name) == lower(spec)) return index;
  throw Error("dataset '" + dataset + "': channel '" + spec + "' is " +
              (names.empty() ? std::string("not a number, and no dataset.json under the root names channels")
                             : "not among the channels its dataset.json names (" + describe(names) + ")"));
}

std::vector<CaseSource> discover_msd(const fs::path& root, const std::string& name,
                                     const nlohmann::json& doc, std::optional<int64_t> channel,
                                     const ChannelNames& names) {
  const auto json_file = (root / "dataset.json").string();
  if (!channel && names.size() > 1)
    throw file_error(json_file, "names " + std::to_string(names.size()) + " channels (" +
                                    describe(names) + "): choose one with the dataset's channel");
  if (channel && !names.empty() && !names.count(*channel))
    throw file_error(json_file, "names no channel " + std::to_string(*channel) + " (" + describe(names) + ")");
  std::vector<CaseSource> cases;
  for (size_t i = 0; i < doc["training"].size(); ++i) {
    const auto where = json_file + ": training[" + std::to_string(i) + "]";
    const auto image = (root / json_path(doc["training"][i], "image", where)).lexically_normal();
    const auto label = (root / json_path(doc["training"][i], "label", where)).lexically_normal();
    for (const auto& p : {image, label})
      if (!fs::is_regular_file(p)) throw file_error(p.string(), "listed in " + where + " but missing");
    cases.push_back({name + "/" + strip_image_extension(label.filename().string()), image.string(),
                     label.string(), {}, Modality::Other, channel});
  }
  return cases;
}

// nnU-Net v1 keeps the Decathlon's dataset.json, whose "training" list names `case.nii.gz`,
// while its imagesTr/ holds `case_0000.nii.gz`, `case_0001.nii.gz`, …: such a list is not
// read; the folders are.
bool lists_nnunet_v1_images(const fs::path& root, const nlohmann::json& doc) {
  const auto& training = doc["training"];
  if (!training.is_array() || training.empty() || !training[0].is_object() ||
      !training[0].contains("image") || !training[0]["image"].is_string())
    return false;
  const auto image = (root / training[0]["image"].get<std::string>()).lexically_normal();
  const auto name = image.filename().string();
  return !fs::exists(image) &&
         fs::exists(image.parent_path() / (strip_image_extension(name) + "_0000" + extension_of(name)));
}

// What a file pattern holds where each case's name goes.
const std::string kCaseToken = "{case}";

std::string replace_case(std::string pattern, const std::string& case_name) {
  for (auto at = pattern.find(kCaseToken); at != std::string::npos;
       at = pattern.find(kCaseToken, at + case_name.size()))
    pattern.replace(at, kCaseToken.size(), case_name);
  return pattern;
}

// Cases named by file patterns: the entries of the first folder level whose name matches
// the pattern's "{case}" part, kept where the image exists.
std::vector<CaseSource> discover_patterns(const fs::path& root, const std::string& name,
                                          const std::string& image_pattern,
                                          const std::string& label_pattern,
                                          std::optional<int64_t> channel) {
  for (const auto* p : {&image_pattern, &label_pattern}) {
    if (p->find(kCaseToken) == std::string::npos)
      throw file_error(root.string(), "file pattern '" + *p + "' has no " + kCaseToken);
    if (fs::path(*p).is_absolute())
      throw file_error(root.string(), "file pattern '" + *p + "' must be relative to the dataset's root");
  }
  fs::path dir = root;
  std::string component;
  for (const auto& part : fs::path(image_pattern)) {
    if (part.string().find(kCaseToken) != std::string::npos) {
      component = part.string();
      break;
    }
    dir /= part;
  }
  const auto token = component.find(kCaseToken);
  const std::string prefix = component.substr(0, token),
                    suffix = component.substr(token + kCaseToken.size());
  if (suffix.find(kCaseToken) != std::string::npos)
    throw file_error(root.string(), "file pattern '" + image_pattern + "' has " + kCaseToken +
                                        " twice in one name");
  if (!fs::is_directory(dir)) throw file_error(dir.string(), "folder of the image pattern does not exist");

  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(dir)) entries.push_back(entry.path().filename().string());
  std::sort(entries.begin(), entries.end());
  std::vector<CaseSource> cases;
  std::vector<std::string> without_image;
  for (const auto& entry : entries) {
    if (entry.empty() || entry[0] == '.' || entry.size() <= prefix.size() + suffix.size() ||
        entry.compare(0, prefix.size(), prefix) != 0 ||
        entry.compare(entry.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const auto case_name = entry.substr(prefix.size(), entry.size() - prefix.size() - suffix.size());
    const auto image = (root / replace_case(image_pattern, case_name)).lexically_normal();
    const auto label = (root / replace_case(label_pattern, case_name)).lexically_normal();
    if (!fs::exists(image)) {
      if (fs::is_directory(dir / entry)) without_image.push_back(entry);
      continue;
    }
    if (!fs::exists(label)) throw file_error(image.string(), "no label for this image: expected " + label.string());
    cases.push_back({name + "/" + case_name, image.string(), label.string(), {}, Modality::Other, channel});
  }
  if (cases.empty())
    throw file_error(root.string(), "no case matches the image pattern '" + image_pattern + "'");
  if (!without_image.empty())
    spdlog::warn("dataset '{}': {} folder(s) of {} have no image '{}', skipped: {}", name,
                 without_image.size(), dir.string(), image_pattern, without_image.front());
  return cases;
}

}  // namespace

Modality parse_modality(const std::string& name) {
  const auto n = lower(name);
  if (n == "ct") return Modality::CT;
  if (n == "mr" || n == "mri") return Modality::MR;
  if (n == "other") return Modality::Other;
  throw Error("unknown modality '" + name + "' (expected CT, MR or other)");
}

std::string modality_name(Modality m) {
  switch (m) {
    case Modality::CT: return "CT";
    case Modality::MR: return "MR";
    case Modality::Other: break;
  }
  return "other";
}

std::string strip_image_extension(const std::string& file_name) {
  const auto ext = extension_of(file_name);
  return file_name.substr(0, file_name.size() - ext.size());
}

bool has_image_extension(const std::string& file_name) { return !extension_of(file_name).empty(); }

std::vector<CaseSource> discover_cases(const DatasetSpec& spec) {
  if (spec.root.empty() == spec.pairs.empty())
    throw Error("dataset '" + spec.name + "': give either a root folder or a list of pairs");
  std::string name = spec.name;
  std::vector<CaseSource> cases;
  if (!spec.root.empty()) {
    const fs::path root(spec.root);
    if (name.empty()) name = root.lexically_normal().filename().string();
    if (name.empty()) name = root.lexically_normal().parent_path().filename().string();
    if (!fs::is_directory(root)) throw file_error(spec.root, "dataset folder does not exist");
    const auto json_file = (root / "dataset.json").string();
    const auto doc = fs::is_regular_file(json_file) ? read_dataset_json(json_file) : nlohmann::json::object();
    const auto names = channel_names(doc, json_file);
    const auto channel = resolve_channel(spec.channel, names, name);
    if (spec.image_pattern.empty() != spec.label_pattern.empty())
      throw Error("dataset '" + name + "': give both an image and a label pattern, or neither");
    if (!spec.image_pattern.empty()) {
      cases = discover_patterns(root, name, spec.image_pattern, spec.label_pattern, channel);
    } else if (doc.contains("training") && !lists_nnunet_v1_images(root, doc)) {
      if (!doc["training"].is_array()) throw file_error(json_file, "\"training\" is not a list");
      cases = discover_msd(root, name, doc, channel, names);
    } else if (fs::is_directory(root / "imagesTr") && fs::is_directory(root / "labelsTr")) {
      cases = discover_folders(root, name, channel, names);
    } else {
      throw file_error(spec.root, fs::is_regular_file(json_file)
                                      ? "its dataset.json lists no \"training\" cases and there is no imagesTr/ + labelsTr/"
                                      : "neither dataset.json nor imagesTr/ + labelsTr/ found");
    }
  } else {
    if (name.empty()) name = "pairs";
    if (!spec.image_pattern.empty() || !spec.label_pattern.empty())
      throw Error("dataset '" + name + "': file patterns are read under a root folder, not with pairs");
    const auto channel = resolve_channel(spec.channel, {}, name);
    for (const auto& [image, label] : spec.pairs) {
      // A file, or a DICOM series folder (msam::imageio reads either, images and labels).
      for (const auto& p : {image, label})
        if (!fs::is_regular_file(p) && !fs::is_directory(p))
          throw file_error(p, "no such file or DICOM series folder");
      // Named after the image: several images may share one label (BraTS: one segmentation
      // for four MR sequences).
      cases.push_back({name + "/" + scan_name(image), image, label, {}, Modality::Other, channel});
    }
  }
  if (name.find('/') != std::string::npos) throw Error("dataset name '" + name + "' contains '/'");
  if (cases.empty()) throw file_error(spec.root, "dataset has no cases");
  std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (size_t i = 1; i < cases.size(); ++i)
    if (cases[i].id == cases[i - 1].id)
      throw file_error(cases[i].image, "case name '" + cases[i].id + "' appears twice (also " +
                                           cases[i - 1].image +
                                           "); rename one, or put them in datasets of different names");
  for (auto& c : cases) {
    c.targets = spec.targets;
    c.modality = spec.modality;
  }
  return cases;
}

std::vector<CaseSource> discover_cases(const std::vector<DatasetSpec>& specs) {
  std::vector<CaseSource> all;
  std::set<std::string> names;
  for (const auto& spec : specs) {
    auto cases = discover_cases(spec);
    const auto name = cases.front().id.substr(0, cases.front().id.find('/'));
    if (!names.insert(name).second)
      throw Error("two datasets are both named '" + name + "': give them distinct names");
    all.insert(all.end(), cases.begin(), cases.end());
  }
  return all;
}

}  // namespace msam::data
