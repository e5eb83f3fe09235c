#include "training_fixtures.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "msam/data/synth.h"

namespace fs = std::filesystem;

namespace msam::test {

model::MSAMConfig micro_model_config() {
  model::MSAMConfig m;
  m.encoder.embed_dim = 32;
  m.encoder.depth = 1;
  m.encoder.num_heads = 2;
  m.encoder.global_attn_indexes = {0};
  m.encoder.patch_size = 8;
  m.encoder.img_size = 32;
  m.encoder.out_chans = 48;  // the prompt width
  m.encoder.lora_rank = 2;
  m.adapter_heads = 2;
  m.decoder_heads = 2;
  m.decoder_mlp_dim = 64;
  m.dense_pe_axes = model::DensePeAxes::kAligned;
  return m;
}

std::vector<std::pair<std::string, std::string>> synthetic_source_pairs(const std::string& dir,
                                                                        int cases) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (int i = 0; i < cases; ++i)
    pairs.emplace_back(dir + "/case_" + std::to_string(i) + ".nii.gz",
                       dir + "/case_" + std::to_string(i) + "_label.nii.gz");
  return pairs;
}

data::CaseReader write_synthetic_sources(const std::string& dir, int cases, uint64_t seed) {
  fs::create_directories(dir);
  auto volumes = std::make_shared<std::map<std::string, std::pair<data::Volume, data::Volume>>>();
  const auto pairs = synthetic_source_pairs(dir, cases);
  for (int i = 0; i < cases; ++i) {
    std::ofstream(pairs[i].first) << "stand-in";
    std::ofstream(pairs[i].second) << "stand-in";
    auto c = data::make_synthetic_case(seed, i, 1);
    (*volumes)[pairs[i].first] = {c.image, c.label};
  }
  return [volumes](const data::CaseSource& s) { return volumes->at(s.image); };
}

}  // namespace msam::test
