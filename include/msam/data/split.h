// Train/val/test split of case ids: deterministic from a seed, stored as JSON and reused so
// that every run and every later evaluation sees the same cases.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace msam::data {

struct Split {
  std::vector<std::string> train, val, test;
  uint64_t seed = 0;
};

// Shuffles the sorted ids with a seeded Fisher–Yates (splitmix64, identical on every platform)
// and cuts val = round(n·r_val/Σr), test = round(n·r_test/Σr), train = the rest (≥ 1).
Split make_split(std::vector<std::string> ids, uint64_t seed,
                 std::array<double, 3> ratios = {6.0, 2.0, 2.0});

// JSON: {"seed": s, "train": [...], "val": [...], "test": [...]}.
void write_split(const std::string& path, const Split& split);
Split read_split(const std::string& path);

// Reuses `path` when it exists, otherwise makes the split and writes it. An existing file must
// name exactly the given cases: a case that no longer exists, or one added since the file was
// written, is an msam::Error naming it (delete the file to re-split deliberately).
Split load_or_create_split(const std::string& path, const std::vector<std::string>& ids,
                           uint64_t seed, std::array<double, 3> ratios = {6.0, 2.0, 2.0});

// 64-bit mixer used wherever a seed must be turned into reproducible random numbers.
uint64_t splitmix64(uint64_t& state);

}  // namespace msam::data
