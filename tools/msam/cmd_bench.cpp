// msam bench: times the pieces that matter, in one process, and prints medians and ratios.
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <sstream>
#include <vector>

#include "cli_support.h"
#include "command.h"
#include "msam/common/compat.h"
#include "msam/common/device.h"
#include "msam/common/error.h"
#include "msam/data/benchmark.h"
#include "msam/model/cuda_graphs.h"
#include "msam/interaction/refinement.h"
#include "msam/model/msam.h"
#include "msam/model/presets.h"
#include "msam/train/step_graph.h"
#include "msam/train/training_step.h"
#ifdef MSAM_HAVE_ITK
#include "msam/imageio/image_io.h"
#endif
#ifdef MSAM_HAVE_SERVE
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "msam/serve/scan_files.h"
#include "msam/serve/server.h"
#endif

namespace msam::cli {
namespace {

struct Options {
  std::string device = "cpu";
  int repeats = 5;
  int padded_repeats = 1;
  bool skip_padded = false;
  bool data = false;
  std::string precisions;  // default: fp32 on the CPU, fp32,bf16 on CUDA
  std::string train;       // "auto": training steps on CUDA only; "on" / "off"
  std::string batch_sizes = "2,8";
  int train_repeats = 5;
  int serve_clicks = 0;  // > 0: time this many clicks through msam serve's HTTP API
  // The reference's encoder, one click and encoder + 10 clicks (ms) measured on this machine;
  // empty: the H200 figures below, on CUDA only.
  std::string reference;
};

// The reference Python implementation (SAM-Med3D + M-SAM, PyTorch 2.11, fp32, random
// weights) measured on an NVIDIA H200 (issue 6): the figures msam's CUDA numbers are
// compared with. Only meaningful on the same card.
struct RefInference {
  double encoder_seconds, click_seconds, loop_seconds;  // loop: encoder + 10 clicks, batch 1
};
constexpr RefInference kRefH200{0.036, 0.0189, 0.225};
struct RefTraining {
  int64_t batch;
  double samples_per_second, peak_gib;
};
constexpr RefTraining kRefTraining[] = {{2, 2.8, 10.9}, {8, 7.5, 41.1}};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

double median_seconds(int repeats, const std::function<void()>& fn, const torch::Device& d) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    device::synchronize(d);
    auto a = std::chrono::steady_clock::now();
    fn();
    device::synchronize(d);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// B×1×S³ ball-shaped targets of different centres and radii (what clicks are sampled from).
torch::Tensor ball_targets(int64_t batch, int64_t size, const torch::Device& d) {
  auto r = torch::arange(size, torch::dtype(torch::kFloat).device(d));
  std::vector<torch::Tensor> balls;
  for (int64_t b = 0; b < batch; ++b) {
    const double c = size / 2.0 + 6.0 * (b % 3) - 6.0, radius = size / 8.0 + 2.0 * (b % 4);
    auto dz = (r - c).pow(2).view({-1, 1, 1}), dy = (r - size / 2.0).pow(2).view({1, -1, 1}),
         dx = (r - c).pow(2).view({1, 1, -1});
    balls.push_back(((dz + dy + dx) <= radius * radius).to(torch::kFloat));
  }
  return torch::stack(balls).unsqueeze(1);
}

void row(const std::string& what, const char* fmt, double value, const std::string& note = "") {
  std::printf("%-52s ", what.c_str());
  std::printf(fmt, value);
  std::printf("%s\n", note.empty() ? "" : ("   " + note).c_str());
}

std::string ratio_note(const std::optional<double>& reference_seconds, double ours_seconds) {
  if (!reference_seconds) return "";
  char buf[96];
  std::snprintf(buf, sizeof buf, "(reference %.1f ms: %.1fx)", *reference_seconds * 1e3,
                *reference_seconds / ours_seconds);
  return buf;
}

#ifdef MSAM_HAVE_ITK
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
    const auto t = data::benchmark_pipeline(c, case_reader(), data::PreprocessSettings{},
                                            (dir / "cache").string(), 8, 2);
    total.push_back(t.raw_case_to_cache_s);
    read.push_back(t.read_s);
    preprocess.push_back(t.preprocess_s);
    write.push_back(t.write_s);
    batch.push_back(t.cached_sample_to_batch_ms);
  }
  const double megabytes = static_cast<double>(std::filesystem::file_size(dir / "ct.nii.gz")) / 1e6;
  std::filesystem::remove_all(dir);
  std::printf("%-52s %10.2f s   (read %.2f, preprocess %.2f, write %.2f; int16 .nii.gz of %.0f MB; "
              "target < 3 s)\n",
              "raw 512x512x100 CT -> cache entry", median(total), median(read), median(preprocess),
              median(write), megabytes);
  std::printf("%-52s %10.1f ms  (target < 20 ms)\n", "cached 128^3 sample -> batch", median(batch));
}
#endif

#ifdef MSAM_HAVE_SERVE
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

// A person's clicks as `msam serve` answers them, against the same clicks on an
// interaction::Session in this process: p50 / p95 of each, and of the difference per click
// (round trip minus the server's own time for it: HTTP, JSON, the socket). Every click is on
// the same voxel of a 160×160×64 CT-like scan, so each costs one refinement iteration in one
// window, as a person refining a lesion does; the window's encoding is done before timing.
// Between clicks a person looks at the mask: the bench pauses `kPause` (in process it prepares
// the next click there, as the server does while idle).
void bench_serve(const std::string& label, model::MSAM net, const torch::Device& device,
                 int clicks) {
  constexpr auto kPause = std::chrono::milliseconds(400);
  torch::manual_seed(0);
  // Through a file, as the server gets it (a scan read by ITK is an x-fastest view).
  const auto file = serve::volume_bytes(
      data::Volume{(torch::randn({160, 160, 64}) * 200).round(), {}, "bench"}, ".nii");
  const auto scan = serve::read_scan_bytes(file, "bench.nii");
  interaction::SessionOptions so;
  so.device = device;
  const interaction::UserClick click{{80, 80, 32}, interaction::kForeground,
                                     interaction::Space::kVoxel};
  std::vector<double> local;
  {
    interaction::Session session(net, scan, so);
    session.add_click(click);
    for (int i = 0; i < clicks; ++i) {
      session.prepare_next_click();
      local.push_back(session.add_click(click).milliseconds);
    }
  }
  serve::ServerOptions options;
  options.port = 0;
  options.session = so;
  serve::Server server(net, options);
  const int port = server.bind();
  std::thread thread([&] { server.run(); });
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(600, 0);
  const auto created = client.Post("/api/sessions", httplib::Headers{{"X-Filename", "bench.nii"}},
                                   file, "application/octet-stream");
  if (!created || created->status != 201) throw Error("bench --serve: the session failed");
  const auto url = "/api/sessions/" + nlohmann::json::parse(created->body).at("id").get<std::string>() +
                   "/clicks";
  const std::string body = R"({"point": [80, 80, 32], "label": "fg"})";
  std::vector<double> round_trip, server_side, overhead;
  for (int i = 0; i <= clicks; ++i) {
    const auto a = std::chrono::steady_clock::now();
    const auto r = client.Post(url, body, "application/json");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
    if (!r || r->status != 200) throw Error("bench --serve: a click failed");
    std::this_thread::sleep_for(kPause);
    if (i == 0) continue;  // encodes the window
    const double inside = nlohmann::json::parse(r->body).at("ms").get<double>();
    round_trip.push_back(ms);
    server_side.push_back(inside);
    overhead.push_back(ms - inside);
  }
  server.stop();
  thread.join();
  auto line = [&](const std::string& what, const std::vector<double>& v) {
    row(label + ": " + what, "%10.2f ms", percentile(v, 0.5),
        "p95 " + std::to_string(percentile(v, 0.95)).substr(0, 7) + " ms");
  };
  line("click in process", local);
  line("click through HTTP", round_trip);
  line("  of which in the server", server_side);
  line("  HTTP + JSON overhead", overhead);
}
#endif

// Inference: encoder (fast and padded window paths), one click with and without the
// per-volume adapter cache, and the whole refinement loop of one volume.
void bench_inference(const Options& o, const torch::Device& device, const std::string& precision,
                     const std::optional<RefInference>& ref) {
  auto ref_of = [&](double RefInference::*field) -> std::optional<double> {
    if (!ref) return std::nullopt;
    return (*ref).*field;
  };
  const bool cuda = device.is_cuda();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  model::MSAMConfig cfg;  // ViT-B, as SAM-Med3D-turbo / M-SAM
  cfg.encoder.lora_rank = 4;
  model::MSAM net(cfg);
  net->image_encoder->merge_lora();  // as `load_for_inference`
  net->eval();
  net->to(device);
  compat::AutocastGuard amp(device, autocast_dtype(precision, device));
  // Drawn on the CPU: the same input on every device, and no CUDA generator involved.
  auto image = torch::randn({1, 1, 128, 128, 128}).to(device);
  const std::string tag = " [" + precision + "]";

  net->image_encoder->set_window_path(model::WindowPath::Fast);
  net->image_encoder(image);  // warm-up
  const double fast = median_seconds(o.repeats, [&] { net->image_encoder(image); }, device);
  row("image encoder, ViT-B 128^3, fast window path" + tag, "%10.1f ms", fast * 1e3,
      ratio_note(ref_of(&RefInference::encoder_seconds), fast));
  if (!o.skip_padded && precision == "fp32") {
    net->image_encoder->set_window_path(model::WindowPath::Padded);
    net->image_encoder(image);
    const double padded =
        median_seconds(o.padded_repeats, [&] { net->image_encoder(image); }, device);
    net->image_encoder->set_window_path(model::WindowPath::Fast);
    row("image encoder, padded (reference) path" + tag, "%10.1f ms", padded * 1e3);
    row("  speed-up fast vs padded", "%11.1fx", padded / fast);
  }

  auto ctx = net->encode(image);
  auto points = torch::tensor({64, 64, 64}, torch::kLong).view({1, 1, 3}).to(device);
  auto labels = torch::ones({1, 1}, torch::kLong).to(device);
  // A click after the first: the previous prediction is the mask prompt.
  auto low = net->click(ctx, points, labels, torch::zeros({1, 1, 32, 32, 32}, device)).low_res_masks;
  auto cached_click = [&] { net->upsample(net->click(ctx, points, labels, low).low_res_masks); };
  auto uncached_click = [&] {
    auto prompts = net->prompt_encoder(points, labels, low);
    auto src = net->adapter->forward(ctx.image_embedding, prompts.dense);
    auto pred = net->mask_decoder->forward(src, net->prompt_encoder->get_dense_pe(),
                                           prompts.sparse.to(src.scalar_type()), false);
    net->upsample(pred.low_res_masks);
  };
  // What a person waits for in msam serve: the adapter pass of the previous mask ran in the
  // pause before the click (Session::prepare_next_click).
  const auto adapted = net->adapt(ctx, low);
  auto prepared_click = [&] {
    net->upsample(net->decode(ctx, adapted, points, labels).low_res_masks);
  };
  cached_click();
  uncached_click();
  prepared_click();
  const int click_repeats = std::max(o.repeats, 10);
  const double cached = median_seconds(click_repeats, cached_click, device);
  const double uncached = median_seconds(click_repeats, uncached_click, device);
  const double prepared = median_seconds(click_repeats, prepared_click, device);
  auto of_encoder = [&](double seconds) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.3fx the encoder", seconds / fast);
    return std::string(buf);
  };
  const auto ref_click = ref_of(&RefInference::click_seconds);
  row("one click + upsampling, per-volume adapter cache" + tag, "%10.2f ms", cached * 1e3,
      of_encoder(cached) + (ref_click ? ", " + ratio_note(ref_click, cached) : ""));
  row("one click + upsampling, no cache" + tag, "%10.2f ms", uncached * 1e3);
  row("  speed-up cached vs uncached", "%11.2fx", uncached / cached);
  row("one click, mask prompt adapted in the pause before" + tag, "%10.2f ms", prepared * 1e3,
      of_encoder(prepared) + (ref_click ? ", " + ratio_note(ref_click, prepared) : ""));

  // The whole interaction as evaluation runs it: encoder, then 10 clicks each sampled from
  // the error region of the previous prediction, the low-res logits fed back.
  const auto target = ball_targets(1, 128, device);
  interaction::RefinementOptions ro;
  ro.iterations = 10;
  auto loop = [&] {
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(7);
    auto c = net->encode(image);
    interaction::run_refinement(net, c, ro, interaction::simulated_clicks(target, ro, gen),
                                [](const interaction::IterationResult&) {});
  };
  loop();
  const double whole = median_seconds(o.repeats, loop, device);
  row("encoder + 10 sampled clicks (one volume)" + tag, "%10.1f ms", whole * 1e3,
      ratio_note(ref_of(&RefInference::loop_seconds), whole));
  row("  per click in that loop" + tag, "%10.2f ms", (whole - fast) / 10 * 1e3);
  if (!cuda || !model::CudaGraphCache::supported()) return;

  // The same with the encoder and each click replayed from CUDA graphs (what eval and
  // segment use on a GPU).
  net->set_cuda_graphs(true);
  auto encode = [&] { net->encode(image); };
  encode();
  const double g_encode = median_seconds(o.repeats, encode, device);
  auto g_ctx = net->encode(image);
  auto graphed_click = [&] { net->upsample(net->click(g_ctx, points, labels, low).low_res_masks); };
  graphed_click();
  const double g_click = median_seconds(click_repeats, graphed_click, device);
  loop();
  const double g_whole = median_seconds(o.repeats, loop, device);
  net->set_cuda_graphs(false);
  row("CUDA graphs: encoder + adapter image side" + tag, "%10.1f ms", g_encode * 1e3,
      ratio_note(ref_of(&RefInference::encoder_seconds), g_encode));
  row("CUDA graphs: one click + upsampling" + tag, "%10.2f ms", g_click * 1e3,
      ratio_note(ref_click, g_click));
  row("CUDA graphs: encoder + 10 sampled clicks" + tag, "%10.1f ms", g_whole * 1e3,
      ratio_note(ref_of(&RefInference::loop_seconds), g_whole));
  row("  per click in that loop" + tag, "%10.2f ms", (g_whole - g_encode) / 10 * 1e3);
}

// Training steps as the reference trains: ViT-B with a frozen base and LoRA, 11 iterations
// with the loss of each, AdamW (msam's multi-tensor one, as the trainer). Repeated on one
// batch, so the loss must fall. `graphed`: forward and backward replayed from a CUDA graph, as
// the trainer does on a GPU.
void bench_training(const Options& o, const torch::Device& device, const std::string& precision,
                    int64_t batch, bool graphed) {
  torch::manual_seed(0);
  model::MSAMConfig cfg;
  cfg.encoder.lora_rank = 4;
  model::MSAM net(cfg);
  net->image_encoder->freeze_base(true);
  net->to(device);
  net->train();
  train::MultiTensorAdamW optimizer(
      {torch::optim::OptimizerParamGroup(train::trainable_parameters(net))},
      torch::optim::AdamWOptions(8e-4).weight_decay(0.1));
  train::GradScalerOptions so;
  so.enabled = precision == "fp16";
  train::GradScaler scaler(so);
  train::StepSettings s;
  s.refinement.iterations = 11;
  s.amp_dtype = autocast_dtype(precision, device);
  if (graphed && !train::TrainingStepGraph::unsupported_reason(s, scaler, false, device).empty())
    return;
  auto graph = graphed ? std::make_unique<train::TrainingStepGraph>() : nullptr;
  auto image = torch::randn({batch, 1, 128, 128, 128}).to(device);
  auto target = ball_targets(batch, 128, device);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(3);
  double first_loss = 0, last_loss = 0;
  int64_t skipped = 0;
  auto step = [&] {
    auto out = train::simulated_training_step(net, image, target, s, gen, {}, optimizer, scaler,
                                              graph.get());
    skipped += out.stepped ? 0 : 1;
    last_loss = out.loss.item<double>();
  };
  step();
  first_loss = last_loss;
  if (graph && !graph->usable()) return;  // reported on stderr; the eager row stands
  device::reset_peak_memory(device);
  step();
  const double t = median_seconds(o.train_repeats, step, device);
  // A graph's replays write into its memory pool, which the allocator's peak does not see:
  // for those, what the process holds from the driver.
  const double memory =
      (graph ? device::reserved_memory_bytes(device) : device::peak_memory_bytes(device)) /
      double(1 << 30);
  const std::string what = std::string(graph ? "CUDA graph: " : "") + "training step, batch " +
                           std::to_string(batch) + " [" + precision + "]";
  std::string note;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%6.2f samples/s", batch / t);
  note = buf;
  if (memory >= 0) {
    std::snprintf(buf, sizeof buf, graph ? ", reserved %.1f GiB" : ", peak %.1f GiB", memory);
    note += buf;
  }
  if (device.is_cuda())
    for (const auto& r : kRefTraining)
      if (r.batch == batch) {
        std::snprintf(buf, sizeof buf, " (reference %.1f samples/s, %.1f GiB: %.2fx)",
                      r.samples_per_second, r.peak_gib, batch / t / r.samples_per_second);
        note += buf;
      }
  std::snprintf(buf, sizeof buf, "; loss %.3f -> %.3f", first_loss, last_loss);
  note += buf;
  if (skipped) note += ", " + std::to_string(skipped) + " fp16 step(s) skipped";
  row(what, "%10.1f ms", t * 1e3, note);
}

int run(const Options& o) {
  const bool cuda = o.device == "cuda";
  if (cuda && !torch::cuda::is_available()) throw Error("--device cuda: no CUDA device available");
  torch::Device device(cuda ? torch::kCUDA : torch::kCPU);
  const auto precisions = split_list(o.precisions.empty() ? (cuda ? "fp32,bf16" : "fp32")
                                                          : o.precisions);
  for (const auto& p : precisions) autocast_dtype(p, device);
  const bool train = o.train == "on" || (o.train == "auto" && cuda) || (o.train.empty() && cuda);
  std::vector<int64_t> batches;
  for (const auto& b : split_list(o.batch_sizes)) {
    try {
      batches.push_back(std::stoll(b));
    } catch (const std::exception&) {
      throw Error("--batch-sizes: '" + b + "' is not a number");
    }
    if (batches.back() < 1) throw Error("--batch-sizes: sizes must be >= 1");
  }
  if (cuda) at::globalContext().setBenchmarkCuDNN(true);  // fixed shapes throughout

  std::printf("msam bench: device %s%s, %d CPU threads, LibTorch %s\n", o.device.c_str(),
              cuda ? (" (" + std::to_string(torch::cuda::device_count()) + " GPU)").c_str() : "",
              torch::get_num_threads(), TORCH_VERSION);
  std::printf("%-52s %12s\n", "what", "median");
  std::optional<RefInference> ref;
  if (!o.reference.empty()) {
    const auto parts = split_list(o.reference);
    std::vector<double> ms;
    for (const auto& part : parts) {
      try {
        ms.push_back(std::stod(part));
      } catch (const std::exception&) {
        ms.clear();
        break;
      }
    }
    if (ms.size() != 3 || std::any_of(ms.begin(), ms.end(), [](double v) { return !(v > 0); }))
      throw Error("--reference '" + o.reference +
                  "': give the reference's encoder, one click and encoder + 10 clicks in ms, "
                  "e.g. 18900,410,23000");
    ref = RefInference{ms[0] / 1e3, ms[1] / 1e3, ms[2] / 1e3};
  } else if (cuda) {
    ref = kRefH200;
  }
  for (const auto& p : precisions) bench_inference(o, device, p, ref);
  if (train)
    for (const auto& p : precisions)
      for (auto b : batches)
        for (bool graphed : {false, true}) bench_training(o, device, p, b, graphed);
  if (o.serve_clicks > 0) {
#ifdef MSAM_HAVE_SERVE
    torch::manual_seed(0);
    model::MSAMConfig vit_b;
    vit_b.encoder.lora_rank = 4;
    for (const auto& [label, cfg] : {std::pair{"tiny", model::tiny_cpu_config()}, std::pair{"ViT-B", vit_b}}) {
      model::MSAM net(cfg);
      net->eval();
      net->to(device);
      bench_serve(label, net, device, o.serve_clicks);
    }
#else
    throw Error("--serve needs a build with msam serve (ITK and cpp-httplib)");
#endif
  }
  if (o.data) {
#ifdef MSAM_HAVE_ITK
    bench_data(o.repeats);
#else
    throw Error("--data needs a build with ITK (image IO)");
#endif
  }
  return 0;
}

const Register reg("bench", "Time the encoder, clicks, the click loop and training steps",
                   [](CLI::App& app) -> std::function<int()> {
                     auto o = std::make_shared<Options>();
                     app.add_option("--device", o->device, "cpu or cuda")
                         ->check(CLI::IsMember({"cpu", "cuda"}));
                     app.add_option("--repeats", o->repeats, "timed runs per item (median)");
                     app.add_option("--padded-repeats", o->padded_repeats,
                                    "timed runs of the slow padded encoder");
                     app.add_flag("--skip-padded", o->skip_padded,
                                  "do not time the padded reference path");
                     app.add_option("--precision", o->precisions,
                                    "comma-separated fp32,bf16,fp16 (autocast; non-fp32 on CUDA "
                                    "only). Default: fp32 on the CPU, fp32,bf16 on CUDA");
                     app.add_option("--train", o->train,
                                    "time ViT-B training steps: on, off, auto (CUDA only)")
                         ->check(CLI::IsMember({"on", "off", "auto"}));
                     app.add_option("--batch-sizes", o->batch_sizes,
                                    "training-step batch sizes, comma-separated (default 2,8)");
                     app.add_option("--train-repeats", o->train_repeats,
                                    "timed training steps per configuration (median)");
                     app.add_option("--serve", o->serve_clicks,
                                    "also time N clicks through msam serve's HTTP API against "
                                    "the same clicks in process (tiny and ViT-B models)");
                     app.add_option("--reference", o->reference,
                                    "the reference's encoder, one click and encoder + 10 clicks "
                                    "(ms, comma-separated) measured on this machine: rows show "
                                    "the ratio (default on CUDA: the H200 figures)");
                     app.add_flag("--data", o->data,
                                  "also time the data pipeline (raw CT -> cache -> batch)");
                     return [o] { return run(*o); };
                   });

}  // namespace
}  // namespace msam::cli
