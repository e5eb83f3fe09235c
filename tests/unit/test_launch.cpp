// The launch environment: torchrun's and SLURM's variables give this process's rank, the
// world and the rendezvous address; bad values are errors naming the variable.
#include <gtest/gtest.h>

#include "msam/common/error.h"
#include "msam/data/loader.h"
#include "msam/dist/launch.h"

using namespace msam;
using dist::launch_info;

namespace {

struct Expected {
  std::string launcher;
  int rank, world_size, local_rank, local_world_size;
  std::string master_addr;
  int master_port;
};

void expect_launch(const dist::LaunchInfo& l, const Expected& e) {
  EXPECT_EQ(l.launcher, e.launcher);
  EXPECT_EQ(l.rank, e.rank);
  EXPECT_EQ(l.world_size, e.world_size);
  EXPECT_EQ(l.local_rank, e.local_rank);
  EXPECT_EQ(l.local_world_size, e.local_world_size);
  EXPECT_EQ(l.master_addr, e.master_addr);
  EXPECT_EQ(l.master_port, e.master_port);
}

}  // namespace

TEST(Launch, NoLauncherIsOneProcess) {
  const auto l = launch_info({{"PATH", "/usr/bin"}});
  EXPECT_FALSE(l.distributed());
  EXPECT_EQ(l.launcher, "none");
  EXPECT_EQ(l.describe(), "single process");
}

TEST(Launch, TorchrunVariables) {
  const auto l = launch_info({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                              {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "node7"},
                              {"MASTER_PORT", "29400"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  expect_launch(l, {"torchrun", 5, 8, 1, 4, "node7", 29400});
  EXPECT_TRUE(l.agent_store);
  EXPECT_EQ(l.describe(), "rank 5 of 8");
  EXPECT_FALSE(launch_info({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).agent_store);
}

TEST(Launch, SlurmVariables) {
  const auto l = launch_info({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"},
                              {"SLURM_LOCALID", "2"}, {"SLURM_TASKS_PER_NODE", "4(x2)"},
                              {"SLURM_JOB_NODELIST", "gpu[07-08]"}, {"SLURM_JOB_ID", "123456"}});
  expect_launch(l, {"slurm", 6, 8, 2, 4, "gpu07", dist::slurm_port(123456)});
  EXPECT_EQ(dist::slurm_port(123456), 15000 + 123456 % 20000);
  // MASTER_ADDR / MASTER_PORT given to srun win.
  const auto m = launch_info({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"},
                              {"SLURM_JOB_NODELIST", "a1,a2"}, {"MASTER_ADDR", "10.0.0.9"},
                              {"MASTER_PORT", "31000"}, {"SLURM_JOB_ID", "5"}});
  EXPECT_EQ(m.master_addr, "10.0.0.9");
  EXPECT_EQ(m.master_port, 31000);
  // torchrun's variables win over SLURM's (torchrun started inside an allocation).
  EXPECT_EQ(launch_info({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"RANK", "1"},
                         {"WORLD_SIZE", "2"}}).launcher,
            "torchrun");
}

TEST(Launch, FirstHostOfASlurmNodeList) {
  EXPECT_EQ(dist::first_slurm_host("node1"), "node1");
  EXPECT_EQ(dist::first_slurm_host("node1,node2"), "node1");
  EXPECT_EQ(dist::first_slurm_host("gpu[03-05,9],cpu1"), "gpu03");
  EXPECT_EQ(dist::first_slurm_host("gpu[9,03-05]"), "gpu9");
  EXPECT_EQ(dist::first_slurm_host("rack[2]-node"), "rack2-node");
  EXPECT_THROW(dist::first_slurm_host("gpu[03"), Error);
  EXPECT_THROW(dist::first_slurm_host(""), Error);
}

TEST(Launch, BadValuesNameTheVariable) {
  auto message = [](const dist::Environment& env) {
    try {
      launch_info(env);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"RANK", "one"}, {"WORLD_SIZE", "2"}}).find("RANK=one is not an integer"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("rank 2 is outside 0..1"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT must be in 1..65535"),
            std::string::npos);
  EXPECT_NE(message({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}).find("SLURM_JOB_NODELIST"),
            std::string::npos);
}

// Each rank's share of a global batch: contiguous, in order, covering it once; a short last
// batch leaves some ranks fewer (or no) samples.
TEST(BatchShare, RankSharesCoverTheGlobalBatch) {
  EXPECT_EQ(data::rank_share(4, 8, 0, 2), (std::pair<size_t, size_t>{4, 6}));
  EXPECT_EQ(data::rank_share(4, 8, 1, 2), (std::pair<size_t, size_t>{6, 8}));
  EXPECT_EQ(data::rank_share(8, 9, 0, 2), (std::pair<size_t, size_t>{8, 8}));
  EXPECT_EQ(data::rank_share(8, 9, 1, 2), (std::pair<size_t, size_t>{8, 9}));
  for (int world = 1; world <= 5; ++world) {
    size_t next = 10;
    for (int r = 0; r < world; ++r) {
      const auto [first, last] = data::rank_share(10, 17, r, world);
      EXPECT_EQ(first, next);
      next = last;
    }
    EXPECT_EQ(next, 17u);
  }
}
