// Data-parallel training and evaluation on Gloo over 127.0.0.1, CPU, a small model: two ranks
// train as one process does with the same global batch, hold identical parameters, fail
// promptly when one of them is killed, resume with another number of ranks, and evaluate to
// the same per_case.csv; the gradient all-reduce weights ranks by their share of the batch.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "dist_fixture.h"
#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/dist/gradient_reducer.h"
#include "msam/dist/local_launch.h"
#include "msam/dist/process_group.h"
#include "msam/eval/split_evaluation.h"
#include "msam/io/safetensors.h"
#include "msam/train/trainer.h"

namespace fs = std::filesystem;
using namespace msam;

namespace {

std::string self() { return fs::read_symlink("/proc/self/exe").string(); }

std::vector<nlohmann::json> history(const std::string& out) {
  std::ifstream in(out + "/metrics.jsonl");
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::map<std::string, at::Tensor> params_of(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : io::read_safetensors(path).tensors) out[name] = t;
  return out;
}

std::map<std::string, at::Tensor> model_params(train::Trainer& trainer) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : trainer.model()->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

// The largest |a − b| over all parameters.
double max_difference(const std::map<std::string, at::Tensor>& a,
                      const std::map<std::string, at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) {
    const auto it = b.find(name);
    if (it == b.end()) {
      ADD_FAILURE() << "missing parameter " << name;
      continue;
    }
    worst = std::max(worst, (t - it->second).abs().max().item<double>());
  }
  return worst;
}

// Float32 tolerances of "two ranks = one process". The ranks compute each sample's forward and
// backward alone instead of in a batch of two and add the two halves of the gradient in the
// all-reduce: the same sums in another order, ~1e-7 relative. AdamW divides each update by
// √v, so after 6 steps a parameter moves by at most 6 · lr = 6e-3 and rounding reaches it
// only as a relative error of the gradient; 2e-5 on parameters of magnitude ≤ ~1 leaves room
// for that (measured: see README "Training on several GPUs or nodes").
constexpr double kParamTol = 2e-5;
constexpr double kLossTol = 1e-5;

// One data set and the one-process run that every test compares with.
class DataParallel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);
    data_ = new std::string(test::temp_dir("dist_data"));
    test::prepare_dist_data(*data_, 8);
    one_ = new std::string(test::temp_dir("dist_one"));
    auto config = test::dist_run_config(*data_, *one_);
    train::TrainerOptions o;
    o.max_steps_per_epoch = 3;
    train::Trainer trainer(config, "dist test", o);
    trainer.run();
    one_params_ = new std::map<std::string, at::Tensor>(model_params(trainer));
    train_cases_ = new size_t(trainer.data().train.size());
  }
  static void TearDownTestSuite() {
    delete data_;
    delete one_;
    delete one_params_;
    delete train_cases_;
  }

  static std::vector<std::string> worker(const std::vector<std::string>& args) {
    std::vector<std::string> a{self(), "--dist-worker"};
    a.insert(a.end(), args.begin(), args.end());
    return a;
  }

  static std::string* data_;
  static std::string* one_;
  static std::map<std::string, at::Tensor>* one_params_;
  static size_t* train_cases_;
};
std::string* DataParallel::data_ = nullptr;
std::string* DataParallel::one_ = nullptr;
std::map<std::string, at::Tensor>* DataParallel::one_params_ = nullptr;
size_t* DataParallel::train_cases_ = nullptr;

TEST_F(DataParallel, TwoRanksTrainAsOneProcessWithTheSameGlobalBatch) {
  // 5 training cases in batches of 2: the third step's batch holds one case, so rank 1's share
  // of it is empty and it contributes weight 0.
  ASSERT_EQ(*train_cases_, 5u);
  const auto out = test::temp_dir("dist_two");
  ASSERT_EQ(dist::run_local_ranks(2, worker({"train", *data_, out, "2", "3", "60"})), 0);

  const auto one = history(*one_), two = history(out);
  ASSERT_EQ(one.size(), 2u);
  ASSERT_EQ(two.size(), 2u);
  for (size_t e = 0; e < 2; ++e)
    for (const char* key : {"train_loss", "train_dice", "val_loss", "val_dice"}) {
      const double a = one[e][key].get<double>(), b = two[e][key].get<double>();
      EXPECT_NEAR(a, b, kLossTol * std::max(1.0, std::abs(a))) << key << " epoch " << e + 1;
    }
  // Identical on both ranks: the same reduced gradients through the same optimiser.
  const auto rank0 = params_of(out + "/rank0_params.safetensors");
  const auto rank1 = params_of(out + "/rank1_params.safetensors");
  EXPECT_EQ(max_difference(rank0, rank1), 0.0);
  // Rank 0's checkpoint holds them, and they are the one process's.
  const double diff = max_difference(*one_params_, rank0);
  EXPECT_LE(diff, kParamTol);
  std::printf("max |Δparameter| one process vs two ranks after 6 steps: %.3g\n", diff);
  EXPECT_TRUE(fs::exists(out + "/latest.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/train.log"));
}

TEST_F(DataParallel, ARunOfTwoRanksResumesWithOne) {
  const auto out = test::temp_dir("dist_resume");
  ASSERT_EQ(dist::run_local_ranks(2, worker({"train", *data_, out, "1", "3", "60"})), 0);
  ASSERT_EQ(history(out).size(), 1u);
  auto config = test::dist_run_config(*data_, out);
  train::TrainerOptions o;
  o.max_steps_per_epoch = 3;
  o.resume = true;
  train::Trainer trainer(config, "dist test", o);
  const auto h = trainer.run();
  ASSERT_EQ(h.size(), 2u);
  const auto one = history(*one_);
  EXPECT_NEAR(h[1].train_loss, one[1]["train_loss"].get<double>(), kLossTol);
  EXPECT_LE(max_difference(*one_params_, model_params(trainer)), kParamTol);
}

// Two training ranks started by hand (stderr to <out>/stderr_rank<r>.txt) that train until
// something stops them; returns once rank 0 has finished an epoch.
std::vector<pid_t> start_endless_ranks(const std::vector<std::string>& worker_args,
                                       const std::string& out) {
  const int port = dist::free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    auto args = worker_args;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env{"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
                                 "WORLD_SIZE=2", "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                                 "MASTER_PORT=" + std::to_string(port)};
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const auto log = out + "/stderr_rank" + std::to_string(r) + ".txt";
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
    pids.push_back(pid);
  }
  // Rank 0 writes metrics.csv after each epoch: training is under way.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (!fs::exists(out + "/metrics.csv") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(fs::exists(out + "/metrics.csv")) << "training did not start";
  return pids;
}

// Waits up to `limit` for `pid`; kills it if it is still there. Returns (exited, status).
std::pair<bool, int> wait_for_exit(pid_t pid, std::chrono::seconds limit) {
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (std::chrono::steady_clock::now() - t0 < limit) {
    if (waitpid(pid, &status, WNOHANG) == pid) return {true, status};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return {false, 0};
}

// Rank 0's "dist: rank 0 of 2: ... failed ..." line.
std::string rank0_error(const std::string& out) {
  std::stringstream err;
  err << std::ifstream(out + "/stderr_rank0.txt").rdbuf();
  const auto text = err.str();
  const auto at = text.find("dist: rank 0 of 2: ");
  if (at == std::string::npos) return "no dist error in rank 0's stderr:\n" + text;
  return text.substr(at, text.find('\n', at) - at);
}

TEST_F(DataParallel, AKilledRankFailsTheOtherAtOnce) {
  const auto out = test::temp_dir("dist_kill");
  const auto pids = start_endless_ranks(worker({"train", *data_, out, "1000", "1", "20"}), out);
  ASSERT_EQ(pids.size(), 2u);
  kill(pids[1], SIGKILL);
  waitpid(pids[1], nullptr, 0);
  const auto killed = std::chrono::steady_clock::now();
  // dist.timeout is 20 s; a closed connection is noticed at once.
  const auto [exited, status] = wait_for_exit(pids[0], std::chrono::seconds(60));
  ASSERT_TRUE(exited) << "rank 0 still runs 60 s after rank 1 was killed";
  std::printf("rank 0 exited %.1f s after rank 1 was killed\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  const auto error = rank0_error(out);
  std::printf("rank 0's error: %s\n", error.c_str());
  EXPECT_NE(error.find("failed"), std::string::npos) << error;
  EXPECT_NE(error.find("rank 1 (pid " + std::to_string(pids[1]) + ") has exited"),
            std::string::npos)
      << error;  // The reason is in train.log too, not only on stderr.
  std::stringstream log;
  log << std::ifstream(out + "/train.log").rdbuf();
  EXPECT_NE(log.str().find("[error] training stopped in epoch"), std::string::npos) << log.str();
}

TEST_F(DataParallel, AHangingRankFailsTheOtherAfterTheTimeout) {
  const auto out = test::temp_dir("dist_hang");
  const auto pids = start_endless_ranks(worker({"train", *data_, out, "1000", "1", "5"}), out);
  ASSERT_EQ(pids.size(), 2u);
  kill(pids[1], SIGSTOP);  // alive, connected, silent
  const auto stopped = std::chrono::steady_clock::now();
  const auto [exited, status] = wait_for_exit(pids[0], std::chrono::seconds(60));
  kill(pids[1], SIGKILL);
  waitpid(pids[1], nullptr, 0);
  ASSERT_TRUE(exited) << "rank 0 still runs 60 s after rank 1 stopped (dist.timeout 5 s)";
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  std::printf("rank 0 exited %.1f s after rank 1 stopped (dist.timeout 5 s)\n", seconds);
  EXPECT_GE(seconds, 4.0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  const auto error = rank0_error(out);
  std::printf("rank 0's error: %s\n", error.c_str());
  EXPECT_NE(error.find("dist.timeout = 5 s"), std::string::npos) << error;
}

TEST_F(DataParallel, TwoRanksEvaluateToTheSamePerCaseCsv) {
  auto config = test::dist_run_config(*data_, "unused");
  const auto data = train::prepare_run_data(config, {});
  torch::manual_seed(3);
  model::MSAM model(config.model.architecture);
  eval::EvalOptions clicks;
  clicks.clicks = 3;
  auto options = eval::split_eval_options({}, clicks, "random");
  options.out_dir = test::temp_dir("dist_eval_one");
  options.overlays = 0;
  auto entries = data.train;
  entries.insert(entries.end(), data.test.begin(), data.test.end());
  eval::evaluate_split(model, entries, options, {});

  const auto out = test::temp_dir("dist_eval_two");
  ASSERT_EQ(dist::run_local_ranks(2, worker({"eval", *data_, out})), 0);
  // Every column but the time each case took.
  auto without_seconds = [](const std::string& path) {
    std::ifstream in(path);
    std::string header, line, text;
    std::getline(in, header);
    std::vector<std::string> names;
    std::stringstream hs(header);
    for (std::string n; std::getline(hs, n, ',');) names.push_back(n);
    const auto col = std::find(names.begin(), names.end(), "seconds") - names.begin();
    EXPECT_LT(col, static_cast<long>(names.size())) << "no seconds column in " << path;
    text = header + "\n";
    while (std::getline(in, line)) {
      std::stringstream ls(line);
      int k = 0;
      for (std::string cell; std::getline(ls, cell, ','); ++k)
        if (k != col) text += cell + ",";
      text += "\n";
    }
    return text;
  };
  const auto a = without_seconds(options.out_dir + "/per_case.csv");
  const auto b = without_seconds(out + "/per_case.csv");
  EXPECT_EQ(a, b);
  EXPECT_GT(std::count(a.begin(), a.end(), '\n'), 6);
}

// On a GPU machine (MSAM_TEST_DEVICE=cuda, tools/gpu_check.sh): one rank per GPU trains a
// step on NCCL, and every rank ends with the same parameters.
TEST_F(DataParallel, EveryGpuTakesATrainingStepOnNccl) {
  if (!test::device().is_cuda()) GTEST_SKIP() << "MSAM_TEST_DEVICE=cuda only";
  const int gpus = static_cast<int>(torch::cuda::device_count());
  const auto out = test::temp_dir("dist_nccl");
  ASSERT_EQ(dist::run_local_ranks(gpus, worker({"train", *data_, out, "1", "2", "120"})), 0);
  const auto rank0 = params_of(out + "/rank0_params.safetensors");
  for (int r = 1; r < gpus; ++r)
    EXPECT_EQ(max_difference(rank0, params_of(out + "/rank" + std::to_string(r) +
                                              "_params.safetensors")),
              0.0)
        << "rank " << r;
  std::printf("%d GPU rank(s) trained on NCCL\n", gpus);
}

// Two ranks as two threads of this process: the reducer's arithmetic.
TEST(GradientReducer, WeightsRanksByTheirShareAndKeepsUndefinedGradientsUndefined) {
  const int port = dist::free_port();
  std::vector<std::vector<at::Tensor>> results(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      try {
        dist::LaunchInfo launch;
        launch.rank = launch.local_rank = r;
        launch.world_size = launch.local_world_size = 2;
        launch.master_port = port;
        dist::GroupOptions o;
        o.timeout = std::chrono::seconds(30);
        auto group = dist::ProcessGroup::connect(launch, o);
        // Three parameters of 4 floats; 20-byte buckets hold one each.
        std::vector<at::Tensor> params;
        for (int k = 0; k < 3; ++k) params.push_back(at::zeros({4}).requires_grad_());
        params[0].mutable_grad() = at::full({4}, r == 0 ? 1.0 : 3.0);
        if (r == 0) params[1].mutable_grad() = at::full({4}, 2.0);
        dist::GradientReducer reducer(group, params, 20);
        EXPECT_EQ(reducer.num_buckets(), 3u);
        // Rank 0 holds 3 of 4 samples, rank 1 one.
        reducer.reduce(r == 0 ? 0.75 : 0.25);
        for (auto& p : params) results[r].push_back(p.grad());
        group->barrier("test end");
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : ranks) t.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(at::allclose(results[r][0], at::full({4}, 0.75 * 1 + 0.25 * 3))) << r;
    ASSERT_TRUE(results[r][1].defined()) << "defined on rank 0 only: zeros on rank 1";
    EXPECT_TRUE(at::allclose(results[r][1], at::full({4}, 0.75 * 2))) << r;
    EXPECT_FALSE(results[r][2].defined()) << "undefined on every rank stays undefined";
  }
}

TEST(ProcessGroup, AnUnreachableMasterIsAClearErrorAfterTheTimeout) {
  dist::LaunchInfo launch;
  launch.rank = launch.local_rank = 1;
  launch.world_size = launch.local_world_size = 2;
  launch.master_port = dist::free_port();  // nobody listens there
  dist::GroupOptions o;
  o.timeout = std::chrono::seconds(2);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    dist::ProcessGroup::connect(launch, o);
    FAIL() << "connected to nobody";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank 1 of 2 cannot reach the rendezvous store at 127.0.0.1:" +
                     std::to_string(launch.master_port)),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("MASTER_ADDR"), std::string::npos) << m;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

}  // namespace
