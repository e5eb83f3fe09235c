// The ranks of a data-parallel job, connected through LibTorch's c10d: a TCPStore for the
// rendezvous (hosted by rank 0, or by torchrun's agent), ProcessGroupGloo for CPU tensors and
// ProcessGroupNCCL for CUDA tensors (CUDA builds of LibTorch 2.x). The c10d types stay inside
// the implementation; this header is cheap to include.
#pragma once
#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "msam/dist/launch.h"

namespace msam::dist {

struct GroupOptions {
  // How long a collective, the rendezvous or a store read waits before it fails: a rank that
  // died or hangs makes the others fail after at most this long.
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  // NCCL on the device cuda:<local rank> (the tensors reduced must live there); else Gloo.
  bool cuda = false;
};

class ProcessGroup {
 public:
  // Joins the job `launch` describes; every rank of it must call this. An unreachable
  // rendezvous store is an Error after `options.timeout`, naming MASTER_ADDR:MASTER_PORT.
  static std::shared_ptr<ProcessGroup> connect(const LaunchInfo& launch,
                                               const GroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return launch_.rank; }
  int size() const { return launch_.world_size; }
  bool is_main() const { return launch_.rank == 0; }
  const LaunchInfo& launch() const { return launch_; }
  std::chrono::milliseconds timeout() const { return options_.timeout; }
  bool cuda() const { return options_.cuda; }

  // Collectives; `what` names the operation in errors ("gradient all-reduce"). A failure —
  // another rank exited, hung past the timeout, or the network broke — is an Error that
  // names this rank, the operation and what is known of the other ranks.
  // In place: every tensor becomes its sum over the ranks.
  void all_reduce_sum(std::vector<at::Tensor>& tensors, const std::string& what);
  // In place: every tensor becomes rank `root`'s.
  void broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what);
  void barrier(const std::string& what);
  // Every rank's `value`, in rank order, on every rank (through the rendezvous store).
  std::vector<std::string> all_gather(const std::string& value, const std::string& what);

 private:
  struct Impl;
  ProcessGroup(LaunchInfo launch, GroupOptions options);
  [[noreturn]] void fail(const std::string& what, const std::string& cause) const;

  LaunchInfo launch_;
  GroupOptions options_;
  std::unique_ptr<Impl> impl_;
  int64_t gathers_ = 0;
};

}  // namespace msam::dist
