#include "msam/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "msam/common/error.h"

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

// nnU-Net folders: image `case_0000.ext` or `case.ext` ↔ label `case.ext`. Every image and every
// label must find its partner; a stray file is an error rather than a silently smaller dataset.
std::vector<CaseSource> discover_folders(const fs::path& root, const std::string& name) {
  const fs::path images = root / "imagesTr", labels = root / "labelsTr";
  std::map<std::string, std::string> label_by_case;  // case name → label path
  for (const auto& f : image_files_in(labels))
    label_by_case[strip_image_extension(f)] = (labels / f).string();

  static const std::regex channel(R"(^(.*)_(\d{4})$)");
  std::map<std::string, std::string> image_by_case;
  for (const auto& f : image_files_in(images)) {
    std::string stem = strip_image_extension(f);
    std::smatch m;
    if (!label_by_case.count(stem) && std::regex_match(stem, m, channel)) {
      if (m[2] != "0000")
        throw file_error((images / f).string(),
                         "extra image channel " + m[2].str() +
                             ": msam segments single-channel scans (keep only _0000)");
      stem = m[1];
    }
    const auto path = (images / f).string();
    if (image_by_case.count(stem))
      throw file_error(path, "second image for case '" + stem + "' (also " + image_by_case[stem] + ")");
    image_by_case[stem] = path;
  }

  std::vector<CaseSource> cases;
  for (const auto& [stem, label] : label_by_case) {
    auto it = image_by_case.find(stem);
    if (it == image_by_case.end()) {
      const auto ext = extension_of(label);
      throw file_error(label, "no image for this label: expected " +
                                  (images / (stem + "_0000" + ext)).string() + " or " +
                                  (images / (stem + ext)).string());
    }
    cases.push_back({name + "/" + stem, it->second, label, {}, Modality::Other});
  }
  for (const auto& [stem, image] : image_by_case)
    if (!label_by_case.count(stem))
      throw file_error(image, "no label for this image: expected " +
                                  (labels / (stem + extension_of(image))).string());
  return cases;
}

std::string json_path(const nlohmann::json& entry, const char* key, const std::string& where) {
  if (!entry.is_object() || !entry.contains(key) || !entry[key].is_string())
    throw Error(where + ": missing string \"" + key + "\"");
  return entry[key].get<std::string>();
}

std::vector<CaseSource> discover_msd(const fs::path& root, const std::string& name) {
  const auto json_file = (root / "dataset.json").string();
  nlohmann::json doc;
  {
    std::ifstream in(json_file);
    if (!in) throw file_error(json_file, "cannot open");
    try {
      in >> doc;
    } catch (const nlohmann::json::exception& e) {
      throw file_error(json_file, std::string("not valid JSON: ") + e.what());
    }
  }
  if (!doc.is_object() || !doc.contains("training") || !doc["training"].is_array())
    throw file_error(json_file, "no \"training\" list");
  std::vector<CaseSource> cases;
  for (size_t i = 0; i < doc["training"].size(); ++i) {
    const auto where = json_file + ": training[" + std::to_string(i) + "]";
    const auto image = (root / json_path(doc["training"][i], "image", where)).lexically_normal();
    const auto label = (root / json_path(doc["training"][i], "label", where)).lexically_normal();
    for (const auto& p : {image, label})
      if (!fs::is_regular_file(p)) throw file_error(p.string(), "listed in " + where + " but missing");
    cases.push_back({name + "/" + strip_image_extension(label.filename().string()), image.string(),
                     label.string(), {}, Modality::Other});
  }
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
    if (fs::is_regular_file(root / "dataset.json"))
      cases = discover_msd(root, name);
    else if (fs::is_directory(root / "imagesTr") && fs::is_directory(root / "labelsTr"))
      cases = discover_folders(root, name);
    else
      throw file_error(spec.root, "neither dataset.json nor imagesTr/ + labelsTr/ found");
  } else {
    if (name.empty()) name = "pairs";
    for (const auto& [image, label] : spec.pairs) {
      // A file, or a DICOM series folder (msam::imageio reads either, images and labels).
      for (const auto& p : {image, label})
        if (!fs::is_regular_file(p) && !fs::is_directory(p))
          throw file_error(p, "no such file or DICOM series folder");
      // Named after the image: several images may share one label (BraTS: one segmentation
      // for four MR sequences).
      cases.push_back({name + "/" + scan_name(image), image, label, {}, Modality::Other});
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
