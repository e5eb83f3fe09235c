// msam synth --out DIR --cases N --seed S [--max-lesions K]: a synthetic nnU-Net-layout
// lesion dataset.
#ifdef MSAM_HAVE_ITK
#include <iostream>

#include "command.h"
#include "msam/data/synth.h"
#include "msam/imageio/image_io.h"

namespace {

struct SynthArgs {
  std::string out;
  int cases = 10;
  uint64_t seed = 0;
  int max_lesions = 3;
};

const msam::cli::Register reg("synth", "Write a synthetic CT-like lesion dataset (nnU-Net layout)",
                              [](CLI::App& app) {
                                auto a = std::make_shared<SynthArgs>();
                                app.add_option("--out", a->out, "output folder")->required();
                                app.add_option("--cases", a->cases, "number of cases")->capture_default_str();
                                app.add_option("--seed", a->seed, "random seed")->capture_default_str();
                                app.add_option("--max-lesions", a->max_lesions,
                                               "lesions per case at most (1 to 3)")
                                    ->check(CLI::Range(1, 3))
                                    ->capture_default_str();
                                return [a] {
                                  const auto names = msam::data::write_synthetic_dataset(
                                      a->out, a->cases, a->seed, msam::imageio::write_volume,
                                      a->max_lesions);
                                  std::cout << "synth: wrote " << names.size() << " cases to " << a->out << "\n";
                                  return 0;
                                };
                              });

}  // namespace
#endif
