// msam bench: times the pieces that matter, in one process, and prints medians and ratios.
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "command.h"
#include "msam/common/error.h"
#include "cli_support.h"
#include "msam/data/benchmark.h"
#include "msam/imageio/image_io.h"
#include "msam/model/msam.h"

namespace msam::cli {
namespace {

struct Options {
  std::string device = "cpu";
  int repeats = 5;
  int padded_repeats = 1;
  bool skip_padded = false;
  bool data = false;
};

double median_seconds(int repeats, const std::function<void()>& fn, bool cuda) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    if (cuda) torch::cuda::synchronize();
    auto a = std::chrono::steady_clock::now();
    fn();
    if (cuda) torch::cuda::synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The data pipeline's targets: a raw 512×512×100 CT → cache entry, cached sample → batch.
// The CT is int16 and gzip-compressed, as scans are stored; its noise compresses worse than a
// real CT's air and soft tissue, so its decompression is on the slow side. Each stage is the
// median of `repeats` runs over the same files.
void bench_data(int repeats) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("msam_bench_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto image = (torch::randn({512, 512, 100}) * 40 + 40).round().to(torch::kShort);
  auto label = torch::zeros({512, 512, 100}, torch::kByte);
  label.slice(0, 200, 240).slice(1, 250, 290).slice(2, 40, 60).fill_(1);
  image.masked_fill_(label.to(torch::kBool), 150);
  data::Geometry g;
  g.spacing = {0.7, 0.7, 2.5};
  imageio::write_volume((dir / "ct.nii.gz").string(), data::Volume{image, g, ""});
  imageio::write_volume((dir / "ct_label.nii.gz").string(), data::Volume{label, g, ""});
  const data::CaseSource c{"bench/ct", (dir / "ct.nii.gz").string(),
                           (dir / "ct_label.nii.gz").string(), {}, data::Modality::CT};
  std::vector<double> total, read, preprocess, write, batch;
  for (int i = 0; i < repeats; ++i) {
    const auto t = data::benchmark_pipeline(c, itk_case_reader(), data::PreprocessSettings{},
                                            (dir / "cache").string(), 8, 2);
    total.push_back(t.raw_case_to_cache_s);
    read.push_back(t.read_s);
    preprocess.push_back(t.preprocess_s);
    write.push_back(t.write_s);
    batch.push_back(t.cached_sample_to_batch_ms);
  }
  const double megabytes = static_cast<double>(std::filesystem::file_size(dir / "ct.nii.gz")) / 1e6;
  std::filesystem::remove_all(dir);
  std::printf("%-46s %10.2f s   (read %.2f, preprocess %.2f, write %.2f; int16 .nii.gz of %.0f MB; "
              "target < 3 s)\n",
              "raw 512x512x100 CT -> cache entry", median(total), median(read), median(preprocess),
              median(write), megabytes);
  std::printf("%-46s %10.1f ms  (target < 20 ms)\n", "cached 128^3 sample -> batch", median(batch));
}

int run(const Options& o) {
  const bool cuda = o.device == "cuda";
  if (cuda && !torch::cuda::is_available()) throw Error("--device cuda: no CUDA device available");
  torch::Device device(cuda ? torch::kCUDA : torch::kCPU);
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);

  model::MSAMConfig cfg;  // ViT-B, as SAM-Med3D-turbo / M-SAM
  cfg.encoder.lora_rank = 4;
  model::MSAM net(cfg);
  net->eval();
  net->to(device);
  auto image = torch::randn({1, 1, 128, 128, 128}, device);

  std::printf("msam bench — device %s, %d CPU threads, LibTorch %s\n", o.device.c_str(),
              torch::get_num_threads(), TORCH_VERSION);
  std::printf("%-46s %12s\n", "what", "median");

  net->image_encoder->set_window_path(model::WindowPath::Fast);
  net->image_encoder(image);  // warm-up
  const double fast = median_seconds(o.repeats, [&] { net->image_encoder(image); }, cuda);
  std::printf("%-46s %10.1f ms\n", "image encoder, ViT-B 128^3, fast window path", fast * 1e3);
  if (!o.skip_padded) {
    net->image_encoder->set_window_path(model::WindowPath::Padded);
    const double padded =
        median_seconds(o.padded_repeats, [&] { net->image_encoder(image); }, cuda);
    net->image_encoder->set_window_path(model::WindowPath::Fast);
    std::printf("%-46s %10.1f ms\n", "image encoder, padded (reference) path", padded * 1e3);
    std::printf("%-46s %11.1fx\n", "  speed-up fast vs padded", padded / fast);
  }

  auto ctx = net->encode(image);
  auto points = torch::tensor({64, 64, 64}, torch::kLong).view({1, 1, 3}).to(device);
  auto labels = torch::ones({1, 1}, torch::kLong).to(device);
  auto low = torch::zeros({1, 1, 32, 32, 32}, device);
  auto cached_click = [&] { net->click(ctx, points, labels, low); };
  auto uncached_click = [&] {
    auto prompts = net->prompt_encoder(points, labels, low);
    auto src = net->adapter->forward(ctx.image_embedding, prompts.dense);
    net->mask_decoder->forward(src, net->prompt_encoder->get_dense_pe(),
                               prompts.sparse.to(src.scalar_type()), false);
  };
  cached_click();
  const int click_repeats = std::max(o.repeats, 10);
  const double cached = median_seconds(click_repeats, cached_click, cuda);
  const double uncached = median_seconds(click_repeats, uncached_click, cuda);
  std::printf("%-46s %10.1f ms\n", "one click, per-volume adapter cache", cached * 1e3);
  std::printf("%-46s %10.1f ms\n", "one click, no cache", uncached * 1e3);
  std::printf("%-46s %11.2fx\n", "  speed-up cached vs uncached", uncached / cached);
  std::printf("%-46s %10.1f ms\n", "encoder + 10 clicks (cached)", (fast + 10 * cached) * 1e3);
  if (o.data) bench_data(o.repeats);
  return 0;
}

const Register reg("bench", "Time the encoder (fast vs padded window path) and one click",
                   [](CLI::App& app) -> std::function<int()> {
                     auto o = std::make_shared<Options>();
                     app.add_option("--device", o->device, "cpu or cuda")
                         ->check(CLI::IsMember({"cpu", "cuda"}));
                     app.add_option("--repeats", o->repeats, "timed runs per item (median)");
                     app.add_option("--padded-repeats", o->padded_repeats,
                                    "timed runs of the slow padded encoder");
                     app.add_flag("--skip-padded", o->skip_padded,
                                  "do not time the padded reference path");
                     app.add_flag("--data", o->data,
                                  "also time the data pipeline (raw CT -> cache -> batch), "
                                  "--repeats times");
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
