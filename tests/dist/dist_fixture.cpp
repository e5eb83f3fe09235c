#include "dist_fixture.h"

#include "fixtures.h"
#include "training_fixtures.h"

#include <torch/torch.h>

#include <map>

#include "msam/common/error.h"
#include "msam/dist/launch.h"
#include "msam/eval/split_evaluation.h"
#include "msam/io/safetensors.h"
#include "msam/train/trainer.h"

namespace msam::test {

namespace {

constexpr int kCases = 8;

// Joins the job, also a job of one rank (one GPU: NCCL with itself).
std::shared_ptr<dist::ProcessGroup> join(double timeout_s, bool cuda) {
  const auto launch = dist::launch_info(dist::process_environment());
  dist::GroupOptions o;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  o.cuda = cuda;
  return dist::ProcessGroup::connect(launch, o);
}

}  // namespace

train::Config dist_run_config(const std::string& data_dir, const std::string& output) {
  train::Config c;
  train::DatasetSpec d;
  d.name = "synth";
  d.pairs = synthetic_source_pairs(data_dir + "/sources", kCases);
  c.data.datasets = {d};
  c.data.cache_dir = data_dir + "/cache";
  c.data.split.file = data_dir + "/split.json";
  c.data.split.ratios = {0.625, 0.25, 0.125};  // 5 / 2 / 1 cases
  c.data.spacing = std::array<double, 3>{1.5, 1.5, 1.5};
  c.data.min_label_voxels = 20;
  c.data.roi = 32;
  c.data.workers = 1;
  auto& aug = c.data.augment;  // every augmentation on, so the ranks must agree on them
  aug.intensity_scale = 0.1;
  aug.intensity_shift = 0.1;
  aug.bias_field = 0.1;
  aug.rotation_degrees = 15;
  aug.zoom = 0.1;
  aug.gamma = 0.3;
  c.model.architecture = micro_model_config();
  c.model.freeze = train::Freeze::kNone;
  c.loop.iterations = 3;
  c.loop.protocol = interaction::ClickProtocol::kFnFp5050;  // two draws per click
  c.loop.threshold = 0;
  c.optim.lr = 1e-3;
  c.optim.clip_grad_norm = 1.0;  // the global norm, on the reduced gradients
  c.schedule.milestones = {100};
  c.batch_size = 2;
  c.epochs = 2;
  c.output = output;
  c.seed = 7;
  c.threads = 1;
  c.dist.timeout = 60;
  return c;
}

void prepare_dist_data(const std::string& data_dir, int cases) {
  if (cases != kCases) throw Error("prepare_dist_data: the run config names " + std::to_string(kCases) + " cases");
  const auto config = dist_run_config(data_dir, data_dir + "/unused");
  train::prepare_run_data(config, write_synthetic_sources(data_dir + "/sources", cases, 11));
}

int run_dist_worker(const std::vector<std::string>& args) {
  // args: program --dist-worker KIND ...
  const std::string kind = args.at(2);
  torch::set_num_threads(1);
  if (kind == "train") {
    // train DATA OUT EPOCHS STEPS TIMEOUT_S [resume]
    auto config = dist_run_config(args.at(3), args.at(4));
    config.epochs = std::stoi(args.at(5));
    config.dist.timeout = std::stod(args.at(7));
    train::TrainerOptions o;
    o.max_steps_per_epoch = std::stoi(args.at(6));
    o.resume = args.size() > 8 && args[8] == "resume";
    if (test::device().is_cuda()) config.device = train::DeviceKind::kCuda;
    o.group = join(config.dist.timeout, test::device().is_cuda());
    // A global batch every rank has a share of.
    if (o.group->size() > config.batch_size) config.batch_size = o.group->size();
    train::Trainer trainer(config, "dist test", o);
    trainer.run();
    std::map<std::string, at::Tensor> params;
    for (const auto& p : trainer.model()->named_parameters()) params[p.key()] = p.value().detach();
    io::write_safetensors(config.output + "/rank" + std::to_string(o.group->rank()) +
                              "_params.safetensors",
                          params, {});
    return 0;
  }
  if (kind == "eval") {
    // eval DATA OUT
    const auto config = dist_run_config(args.at(3), args.at(4));
    const auto group = join(60, false);
    const auto data = train::prepare_run_data(config, {}, group.get());
    torch::manual_seed(3);
    model::MSAM model(config.model.architecture);
    eval::EvalOptions clicks;
    clicks.clicks = 3;
    auto options = eval::split_eval_options({}, clicks, "random");
    options.group = group;
    options.out_dir = args.at(4);
    options.overlays = 0;
    // All cases: more than one per rank, and a rank with one case more than the other.
    auto entries = data.train;
    entries.insert(entries.end(), data.test.begin(), data.test.end());
    eval::evaluate_split(model, entries, options, {});
    return 0;
  }
  throw Error("unknown worker kind " + kind);
}

}  // namespace msam::test
