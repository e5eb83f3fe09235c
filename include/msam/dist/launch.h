// Where this process stands in a data-parallel job: its rank, the number of ranks and the
// rendezvous address, read from the launcher's environment. Three launchers are understood:
// torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_USE_AGENT_STORE), SLURM's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
// SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE, SLURM_JOB_NODELIST, SLURM_JOB_ID) and
// `msam train --nproc N`, which sets torchrun's variables for the ranks it starts.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace msam::dist {

using Environment = std::map<std::string, std::string>;

// This process's environment variables.
Environment process_environment();

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // the GPU a CUDA rank uses
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";  // host of rank 0, where the rendezvous store runs
  int master_port = 29500;
  // torchrun ≥ 2.0 hosts the store in its agent: every rank, rank 0 too, connects as a client.
  bool agent_store = false;
  std::string launcher = "none";  // "torchrun", "slurm" or "none"

  bool distributed() const { return world_size > 1; }
  // "rank 1 of 4" (or "single process").
  std::string describe() const;
};

// The launch described by `env`: torchrun's variables when RANK and WORLD_SIZE are set, else
// SLURM's when SLURM_PROCID and SLURM_NTASKS are, else a single process. A variable that is
// not a number, a rank outside the world or a port outside 1..65535 is an Error naming the
// variable and its value.
LaunchInfo launch_info(const Environment& env);

// The first host of a SLURM node list: "gpu[03-05,9],cpu1" → "gpu03".
std::string first_slurm_host(const std::string& nodelist);

// The rendezvous port of a SLURM job without MASTER_PORT: 15000 + job id mod 20000, so that
// two jobs sharing a node rarely collide and every task of one job agrees.
int slurm_port(int64_t job_id);

}  // namespace msam::dist
