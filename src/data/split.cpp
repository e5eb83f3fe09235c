#include "msam/data/split.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"

namespace msam::data {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Split make_split(std::vector<std::string> ids, uint64_t seed, std::array<double, 3> ratios) {
  const double total = ratios[0] + ratios[1] + ratios[2];
  if (!(ratios[0] > 0 && ratios[1] >= 0 && ratios[2] >= 0))
    throw Error("split ratios must be train > 0, val ≥ 0, test ≥ 0");
  if (ids.empty()) throw Error("cannot split an empty list of cases");
  std::sort(ids.begin(), ids.end());
  uint64_t state = seed;
  for (size_t i = ids.size() - 1; i > 0; --i)
    std::swap(ids[i], ids[splitmix64(state) % (i + 1)]);
  const auto n = ids.size();
  auto n_val = static_cast<size_t>(std::lround(n * ratios[1] / total));
  auto n_test = static_cast<size_t>(std::lround(n * ratios[2] / total));
  while (n_val + n_test >= n) (n_test >= n_val && n_test > 0 ? n_test : n_val)--;
  Split s;
  s.seed = seed;
  s.val.assign(ids.begin(), ids.begin() + n_val);
  s.test.assign(ids.begin() + n_val, ids.begin() + n_val + n_test);
  s.train.assign(ids.begin() + n_val + n_test, ids.end());
  return s;
}

void write_split(const std::string& path, const Split& split) {
  nlohmann::json j{{"seed", split.seed}, {"train", split.train}, {"val", split.val}, {"test", split.test}};
  io::write_file_atomically(path, j.dump(2) + "\n");
}

Split read_split(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("not valid JSON: ") + e.what());
  }
  Split s;
  try {
    s.seed = j.at("seed").get<uint64_t>();
    s.train = j.at("train").get<std::vector<std::string>>();
    s.val = j.at("val").get<std::vector<std::string>>();
    s.test = j.at("test").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("not a split file (need seed, train, val, test): ") + e.what());
  }
  return s;
}

Split load_or_create_split(const std::string& path, const std::vector<std::string>& ids, uint64_t seed,
                           std::array<double, 3> ratios) {
  if (!std::filesystem::exists(path)) {
    auto s = make_split(ids, seed, ratios);
    write_split(path, s);
    return s;
  }
  auto s = read_split(path);
  const std::set<std::string> present(ids.begin(), ids.end());
  std::set<std::string> listed;
  for (const auto* part : {&s.train, &s.val, &s.test})
    for (const auto& id : *part) {
      if (!present.count(id))
        throw file_error(path, "names case '" + id +
                                   "', which no longer exists in the dataset (delete the file to re-split; `msam eval "
                                   "--split all` scores a model on every case of other data)");
      if (!listed.insert(id).second) throw file_error(path, "lists case '" + id + "' twice");
    }
  for (const auto& id : ids)
    if (!listed.count(id))
      throw file_error(path, "does not contain case '" + id +
                                 "', added since it was written (delete the file to re-split; `msam eval --split "
                                 "all` scores a model on every case of other data)");
  return s;
}

}  // namespace msam::data
