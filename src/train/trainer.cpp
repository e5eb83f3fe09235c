#include "msam/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/data/loader.h"
#include "msam/io/csv.h"
#include "msam/io/svg_chart.h"
#include "msam/io/safetensors.h"
#include "msam/train/checkpoint.h"
#include "msam/train/grad_scaler.h"
#include "msam/train/loss.h"
#include "msam/train/scheduler.h"

namespace fs = std::filesystem;

namespace msam::train {

namespace {

std::string format_duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
  return buf;
}

nlohmann::json to_json(const EpochRecord& r) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"epoch", r.epoch},       {"lr", r.lr},
          {"train_loss", num(r.train_loss)}, {"train_dice", num(r.train_dice)},
          {"val_loss", num(r.val_loss)},     {"val_dice", num(r.val_dice)},
          {"seconds", r.seconds},   {"samples_per_second", r.samples_per_second},
          {"skipped_steps", r.skipped_steps}};
}

EpochRecord from_json(const nlohmann::json& j) {
  auto num = [&](const char* k) { return j.at(k).is_null() ? NAN : j.at(k).get<double>(); };
  EpochRecord r;
  r.epoch = j.at("epoch").get<int64_t>();
  r.lr = num("lr");
  r.train_loss = num("train_loss");
  r.train_dice = num("train_dice");
  r.val_loss = num("val_loss");
  r.val_dice = num("val_dice");
  r.seconds = num("seconds");
  r.samples_per_second = num("samples_per_second");
  r.skipped_steps = j.at("skipped_steps").get<int64_t>();
  return r;
}

uint64_t epoch_seed(int64_t seed, int64_t epoch, uint64_t stream) {
  uint64_t s = static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ull + stream;
  s ^= static_cast<uint64_t>(epoch) + 0x632BE59BD9B4E019ull + (s << 6) + (s >> 2);
  return data::splitmix64(s);
}

}  // namespace

Trainer::Trainer(Config config, std::string config_source, TrainerOptions options)
    : config_(std::move(config)),
      source_(std::move(config_source)),
      options_(std::move(options)),
      device_(device_of(config_, options_.group ? options_.group->launch().local_rank : 0)) {
  if (config_.threads > 0) torch::set_num_threads(static_cast<int>(config_.threads));
  check_global_batch(config_, world());
  if (options_.group && options_.group->cuda() != device_.is_cuda())
    throw Error("dist: the process group's backend (" +
                std::string(options_.group->cuda() ? "NCCL" : "Gloo") +
                ") does not match device: " + (device_.is_cuda() ? "cuda" : "cpu"));
  fs::create_directories(config_.output);
  // A resumed run continues its log; a new one starts it afresh, as it does its checkpoints.
  if (is_main())
    file_log_ = std::make_unique<log::FileLog>(
        (fs::path(config_.output) / "train.log").string(), options_.resume);
  torch::manual_seed(static_cast<uint64_t>(config_.seed));

  data_ = prepare_run_data(config_, options_.reader, options_.group.get());

  model_ = model::MSAM(config_.model.architecture);
  const bool resuming = options_.resume && fs::exists(latest_checkpoint());
  if (options_.resume && !resuming)
    spdlog::info("resume: no " + latest_checkpoint() + " yet, starting a new run");
  if (resuming && is_main()) {
    // A run killed while writing leaves that write's temporary file (the final files are
    // intact: every write is temp file + rename).
    for (const auto& e : fs::directory_iterator(config_.output))
      if (e.is_regular_file() && e.path().filename().string().find(".tmp.") != std::string::npos) {
        fs::remove(e.path());
        spdlog::info("resume: removed the interrupted write " + e.path().string());
      }
  }
  if (!resuming && !config_.model.checkpoint.empty())
    spdlog::info(
        model::load_weights(model_, config_.model.checkpoint, model::WeightsPolicy::kInitFrom));
  apply_freeze(model_, config_);
  model_->to(device_);
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);  // fixed shapes

  optimizer_ = make_optimizer(model_, config_.optim);
  scheduler_ = std::make_unique<MultiStepLR>(*optimizer_, config_.schedule.milestones,
                                             config_.schedule.gamma,
                                             config_.schedule.warmup_epochs);
  GradScalerOptions so;
  so.enabled = config_.precision == Precision::kFp16 && device_.is_cuda();
  scaler_ = std::make_unique<GradScaler>(so);

  if (resuming) {
    const auto meta = read_checkpoint_meta(latest_checkpoint());
    spdlog::info(model::load_weights(model_, latest_checkpoint(), model::WeightsPolicy::kExact));
    apply_freeze(model_, config_);
    model_->to(device_);
    load_optimizer_state(latest_checkpoint(), *optimizer_);
    scheduler_->load_state(nlohmann::json::parse(meta.extra.at("scheduler")));
    scaler_->load_state(nlohmann::json::parse(meta.extra.at("grad_scaler")));
    for (const auto& j : nlohmann::json::parse(meta.extra.at("history")))
      history_.push_back(from_json(j));
    start_epoch_ = meta.epoch;
    global_step_ = meta.global_step;
    best_val_dice_ = meta.best_val_dice;
    // With save_every > 1, best.safetensors may come from an epoch after the latest checkpoint;
    // a repeated epoch must not replace it with a worse model.
    if (fs::exists(best_checkpoint()))
      best_val_dice_ = std::max(best_val_dice_, read_checkpoint_meta(best_checkpoint()).best_val_dice);
    spdlog::info("resume: continuing after epoch " + std::to_string(start_epoch_) + " from " +
                 latest_checkpoint());
  }
  if (device_.is_cuda()) {
    const auto why_not = TrainingStepGraph::unsupported_reason(
        step_settings(config_), *scaler_, config_.loop.mask_perturbation > 0, device_);
    if (why_not.empty()) {
      step_graph_ = std::make_unique<TrainingStepGraph>();
      spdlog::info("training steps replay a CUDA graph (captured at the first full batch)");
    } else {
      spdlog::info("training steps run eagerly: " + why_not);
    }
  }
  if (options_.group) {
    // Every rank starts from rank 0's weights (the same seed and files give the same ones; this
    // makes it so whatever the initialisation did), and reduces the parameters AdamW steps.
    std::vector<torch::Tensor> state;
    for (const auto& p : model_->parameters()) state.push_back(p.detach());
    for (const auto& b : model_->buffers()) state.push_back(b.detach());
    options_.group->broadcast(state, 0, "broadcasting rank 0's parameters");
    std::vector<torch::Tensor> stepped;
    for (auto& group : optimizer_->param_groups())
      for (auto& p : group.params()) stepped.push_back(p);
    reducer_ = std::make_unique<dist::GradientReducer>(
        options_.group, stepped, static_cast<int64_t>(config_.dist.bucket_mb * (1 << 20)));
    spdlog::info("dist: " + std::to_string(world()) + " ranks, global batch " +
                 std::to_string(config_.batch_size) + " (" +
                 std::to_string(config_.batch_size / world()) + " per rank), " +
                 std::to_string(reducer_->num_buckets()) + " gradient bucket(s) of ≤ " +
                 io::format_number(config_.dist.bucket_mb) + " MiB");
  }
  if (is_main())
    io::write_file_atomically((fs::path(config_.output) / "config.yaml").string(),
                              to_yaml(config_));
}

void Trainer::sum_over_ranks(torch::Tensor& values, const std::string& what) {
  if (!options_.group) return;
  // On the ranks' device: NCCL reduces GPU tensors only (the statistics are gathered on the host).
  std::vector<torch::Tensor> t{values.to(device_)};
  options_.group->all_reduce_sum(t, what);
  if (!t[0].is_same(values)) values.copy_(t[0]);
}

std::string Trainer::latest_checkpoint() const {
  return (fs::path(config_.output) / "latest.safetensors").string();
}
std::string Trainer::best_checkpoint() const {
  return (fs::path(config_.output) / "best.safetensors").string();
}

EpochRecord Trainer::train_epoch(int64_t epoch) {
  model_->train();
  data::LoaderOptions lo;
  lo.batch_size = config_.batch_size;
  lo.workers = static_cast<int>(config_.data.workers);
  lo.prefetch = static_cast<int>(config_.data.prefetch);
  lo.shuffle = true;
  lo.augment = config_.data.augment;
  lo.seed = static_cast<uint64_t>(config_.seed);
  lo.rank = rank();
  lo.world = world();
  data::EpochLoader loader(data_.train, lo, epoch);
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(epoch_seed(config_.seed, epoch, 1));
  // Its own stream: a run without perturbation keeps the clicks it always had.
  auto perturb_gen =
      torch::make_generator<at::CPUGeneratorImpl>(epoch_seed(config_.seed, epoch, 3));
  const StepSettings settings = step_settings(config_);
  EpochRecord rec;
  rec.epoch = epoch + 1;
  rec.lr = scheduler_->current_lrs().empty() ? 0 : scheduler_->current_lrs().back();
  const int64_t skipped_before = scaler_->skipped_steps();
  double loss_sum = 0, dice_sum = 0;
  int64_t batches = 0, dice_batches = 0, samples = 0;
  int64_t total = loader.num_batches();
  if (options_.max_steps_per_epoch > 0) total = std::min(total, options_.max_steps_per_epoch);
  const auto t0 = std::chrono::steady_clock::now();
  while (batches < total) {
    auto batch = loader.next();
    if (!batch) break;
    torch::Tensor image, target;
    if (batch->size() > 0) {
      image = batch->image.to(device_);
      target = batch->label.to(device_).to(torch::kFloat);
    }
    // This rank's part of the global batch's mean loss and gradient.
    const double weight = static_cast<double>(batch->size()) / batch->global_size;
    std::function<void()> sync;
    if (reducer_) sync = [&] { reducer_->reduce(weight); };
    const auto step = simulated_training_step(
        model_, image, target, settings, gen, {batch->offset, batch->global_size},
        *optimizer_, *scaler_, step_graph_.get(), sync,
        config_.loop.mask_perturbation > 0
            ? interaction::ball_perturbation(config_.loop.mask_perturbation,
                                             settings.refinement.threshold, perturb_gen,
                                             {batch->offset, batch->global_size})
            : interaction::MaskPerturbation());
    ++global_step_;
    ++batches;
    samples += batch->global_size;
    // The global batch's loss and Dice: (weighted loss, Σ Dice, samples counted) over ranks.
    auto stats = torch::cat({(step.loss.to(torch::kDouble) * weight).view({1}),
                             step.dice_parts.to(torch::kDouble)})
                     .to(torch::kCPU);
    sum_over_ranks(stats, "training statistics all-reduce");
    const double dice = (stats[1] / stats[2]).item<double>();
    loss_sum += stats[0].item<double>();
    if (std::isfinite(dice)) {
      dice_sum += dice;
      ++dice_batches;
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Five lines an epoch in files and pipes; every step redraws the line on a terminal.
    const bool record = batches == total || batches % std::max<int64_t>(1, total / 5) == 0;
    char line[384];
    std::snprintf(line, sizeof line,
                  "epoch %lld/%lld [%lld/%lld] loss %.4f dice %.4f  %.2f samples/s  ETA %s",
                  (long long)(epoch + 1), (long long)config_.epochs, (long long)batches,
                  (long long)total, loss_sum / batches,
                  dice_batches ? dice_sum / dice_batches : NAN, samples / elapsed,
                  format_duration(elapsed / batches * (total - batches)).c_str());
    log::progress(line, record, batches == total);
  }
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rec.samples_per_second = samples / std::max(rec.seconds, 1e-9);
  rec.train_loss = batches ? loss_sum / batches : NAN;
  rec.train_dice = dice_batches ? dice_sum / dice_batches : NAN;
  rec.skipped_steps = scaler_->skipped_steps() - skipped_before;
  if (rec.skipped_steps > 0)
    spdlog::warn("fp16: " + std::to_string(rec.skipped_steps) +
                 " step(s) skipped for inf/nan gradients; loss scale now " +
                 std::to_string(scaler_->scale_value()));
  return rec;
}

std::pair<double, double> Trainer::validate(int64_t epoch) {
  if (data_.val.empty()) return {NAN, NAN};
  model_->eval();
  torch::NoGradGuard no_grad;
  data::LoaderOptions lo;
  lo.batch_size = config_.batch_size;
  lo.workers = static_cast<int>(config_.data.workers);
  lo.shuffle = false;
  lo.seed = static_cast<uint64_t>(config_.seed);
  lo.rank = rank();
  lo.world = world();
  data::EpochLoader loader(data_.val, lo, 0);
  // The same clicks every epoch, so validation Dice is comparable across epochs.
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(epoch_seed(config_.seed, 0, 2));
  const auto ro = step_settings(config_).refinement;
  // Per batch: (loss weighted by this rank's share, Σ Dice, samples counted), summed over the
  // ranks at the end so that every batch's loss and Dice are one process's.
  const int64_t nb = loader.num_batches();
  auto per_batch = torch::zeros({nb, 3}, torch::kDouble);
  while (auto batch = loader.next()) {
    if (batch->size() == 0) continue;
    auto image = batch->image.to(device_);
    auto target = batch->label.to(device_).to(torch::kFloat);
    auto ctx = model_->encode(image);
    double loss = 0;
    torch::Tensor dice_parts;
    interaction::run_refinement(
        model_, ctx, ro,
        interaction::simulated_clicks(target, ro, gen, {batch->offset, batch->global_size}),
        [&](const interaction::IterationResult& it) {
          const bool last = it.index == ro.iterations - 1;
          if (config_.loss.reduce == LossReduce::kSum || last)
            loss += iteration_loss(it.logits, target, config_.loss.kind).item<double>();
          if (last) dice_parts = mask_dice_parts(it.logits, target, ro.threshold).to(torch::kCPU);
        });
    auto row = per_batch[batch->index];
    row[0] = loss * static_cast<double>(batch->size()) / batch->global_size;
    row.narrow(0, 1, 2).copy_(dice_parts);
  }
  sum_over_ranks(per_batch, "validation statistics all-reduce");
  double loss_sum = 0, dice_sum = 0;
  int64_t nd = 0;
  for (int64_t b = 0; b < nb; ++b) {
    loss_sum += per_batch[b][0].item<double>();
    const double dice = (per_batch[b][1] / per_batch[b][2]).item<double>();
    if (std::isfinite(dice)) {
      dice_sum += dice;
      ++nd;
    }
  }
  (void)epoch;
  return {nb ? loss_sum / nb : NAN, nd ? dice_sum / nd : NAN};
}

void Trainer::save(const std::string& path, int64_t epochs_done, bool with_optimizer) {
  CheckpointMeta meta;
  meta.epoch = epochs_done;
  meta.global_step = global_step_;
  meta.best_val_dice = best_val_dice_;
  meta.config_yaml = to_yaml(config_);
  meta.model_config = model_->config().to_json();
  meta.extra["scheduler"] = scheduler_->state().dump();
  meta.extra["grad_scaler"] = scaler_->state().dump();
  nlohmann::json h = nlohmann::json::array();
  for (const auto& r : history_) h.push_back(to_json(r));
  meta.extra["history"] = h.dump();
  save_checkpoint(path, *model_, with_optimizer ? optimizer_.get() : nullptr, meta);
  // A resume reads only latest's moments; best's would be twice its weights' size, unused (and
  // one left by an earlier run in this folder would not match).
  std::error_code ec;
  if (!with_optimizer) fs::remove(optimizer_path(path), ec);
}

void Trainer::write_reports() const {
  const fs::path out(config_.output);
  io::CsvWriter csv((out / "metrics.csv").string(),
                      {"epoch", "lr", "train_loss", "train_dice", "val_loss", "val_dice",
                       "seconds", "samples_per_second", "skipped_steps"});
  std::string jsonl;
  for (const auto& r : history_) {
    csv.add_row({std::to_string(r.epoch), io::format_number(r.lr),
                 io::format_number(r.train_loss), io::format_number(r.train_dice),
                 io::format_number(r.val_loss), io::format_number(r.val_dice),
                 io::format_number(r.seconds), io::format_number(r.samples_per_second),
                 std::to_string(r.skipped_steps)});
    jsonl += to_json(r).dump() + "\n";
  }
  csv.close();
  io::write_file_atomically((out / "metrics.jsonl").string(), jsonl);
  io::Series tl{"train loss", {}, {}, {}}, vl{"val loss", {}, {}, {}},
      td{"train Dice", {}, {}, {}}, vd{"val Dice", {}, {}, {}};
  for (const auto& r : history_) {
    const double e = static_cast<double>(r.epoch);
    tl.x.push_back(e), tl.y.push_back(r.train_loss);
    vl.x.push_back(e), vl.y.push_back(r.val_loss);
    td.x.push_back(e), td.y.push_back(r.train_dice);
    vd.x.push_back(e), vd.y.push_back(r.val_dice);
  }
  io::ChartSpec loss_chart;
  loss_chart.title = "Loss (summed over refinement iterations)";
  loss_chart.x_label = "epoch";
  loss_chart.y_label = "loss";
  loss_chart.series = {tl, vl};
  io::write_line_chart_svg((out / "loss.svg").string(), loss_chart);
  io::ChartSpec dice_chart;
  dice_chart.title = "Dice after the last click (logits > 0.5)";
  dice_chart.x_label = "epoch";
  dice_chart.y_label = "Dice";
  dice_chart.series = {td, vd};
  dice_chart.y_min = 0.0;
  dice_chart.y_max = 1.0;
  io::write_line_chart_svg((out / "dice.svg").string(), dice_chart);
}

void Trainer::run_epoch(int64_t epoch) {
  const auto reduced_before = reducer_ ? reducer_->stats() : dist::GradientReducer::Stats{};
  auto rec = train_epoch(epoch);
  const bool do_val = (epoch + 1) % config_.val_every == 0 || epoch + 1 == config_.epochs;
  if (do_val) std::tie(rec.val_loss, rec.val_dice) = validate(epoch);
  scheduler_->step();
  history_.push_back(rec);
  const bool best = std::isfinite(rec.val_dice) && rec.val_dice > best_val_dice_;
  if (best) best_val_dice_ = rec.val_dice;
  const bool save_latest =
      (epoch + 1) % config_.save_every == 0 || epoch + 1 == config_.epochs;
  if (is_main()) {
    if (save_latest) save(latest_checkpoint(), epoch + 1);
    if (best) save(best_checkpoint(), epoch + 1, /*with_optimizer=*/false);
    write_reports();
  }
  char line[384];
  int used = std::snprintf(line, sizeof line, "epoch %lld: train loss %.4f dice %.4f",
                           (long long)rec.epoch, rec.train_loss, rec.train_dice);
  if (do_val)
    used += std::snprintf(line + used, sizeof line - used, " | val loss %.4f dice %.4f%s",
                          rec.val_loss, rec.val_dice, best ? " (best)" : "");
  used += std::snprintf(line + used, sizeof line - used, " | %.1f s%s", rec.seconds,
                        save_latest && config_.save_every > 1 ? " | saved" : "");
  if (reducer_) {
    const auto& now = reducer_->stats();
    const auto steps = std::max<int64_t>(1, now.calls - reduced_before.calls);
    std::snprintf(line + used, sizeof line - used,
                  " | all-reduce %.1f ms/step, %.2f MiB in %zu bucket(s)",
                  1e3 * (now.seconds - reduced_before.seconds) / steps,
                  now.bytes / double(1 << 20), reducer_->num_buckets());
  }
  spdlog::info(line);
}

std::vector<EpochRecord> Trainer::run() {
  spdlog::info("train: " + std::to_string(data_.train.size()) + " cases, batch " +
               std::to_string(config_.batch_size) + ", " +
               std::to_string(config_.loop.iterations) + " iterations per volume, epochs " +
               std::to_string(start_epoch_ + 1) + ".." + std::to_string(config_.epochs) +
               ", output " + config_.output);
  for (int64_t epoch = start_epoch_; epoch < config_.epochs; ++epoch) {
    try {
      run_epoch(epoch);
    } catch (const std::exception& e) {
      // Into train.log too, which closes before the caller reports the error.
      spdlog::error("training stopped in epoch " + std::to_string(epoch + 1) + ": " + e.what());
      throw;
    }
  }
  if (is_main() && !fs::exists(best_checkpoint()) && fs::exists(latest_checkpoint()))
    fs::copy_file(latest_checkpoint(), best_checkpoint(), fs::copy_options::overwrite_existing);
  // Rank 0 hosts the rendezvous store: it leaves last.
  if (options_.group) options_.group->barrier("end of training");
  return history_;
}

}  // namespace msam::train
