#include "msam/dist/process_group.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

// c10d guards its backends' headers with these; CMake says which backends' headers this build
// has (MSAM_HAVE_*). LibTorch's CMake files define USE_C10D_GLOO even where a pip wheel ships
// no gloo headers, so msam's own guards are MSAM_HAVE_*.
#if defined(MSAM_HAVE_GLOO) && !defined(USE_C10D_GLOO)
#define USE_C10D_GLOO
#endif
#if defined(MSAM_HAVE_NCCL) && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MSAM_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef MSAM_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "msam/common/compat.h"
#include "msam/common/error.h"
#include "msam/common/log.h"

namespace msam::dist {

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::CollectiveBackend> backend;
  std::string host;
};

namespace {

std::string this_host() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

// A process of this host that has ended: gone, or a zombie its parent has not reaped yet.
bool process_ended(int pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() &&
         (line[close + 2] == 'Z' || line[close + 2] == 'X');
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

// c10d's messages carry a backtrace after their first line.
std::string first_line(const std::string& message) {
  return message.substr(0, message.find('\n'));
}

std::string seconds(std::chrono::milliseconds t) {
  return std::to_string(t.count() / 1000) + " s";
}

std::string text(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace

ProcessGroup::ProcessGroup(LaunchInfo launch, GroupOptions options)
    : launch_(std::move(launch)), options_(options), impl_(std::make_unique<Impl>()) {}

ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::connect(const LaunchInfo& launch,
                                                    const GroupOptions& options) {
  std::shared_ptr<ProcessGroup> group(new ProcessGroup(launch, options));
  auto& impl = *group->impl_;
  impl.host = this_host();
  const std::string where = launch.master_addr + ":" + std::to_string(launch.master_port);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(launch.master_port);
  so.isServer = launch.rank == 0 && !launch.agent_store;
  so.numWorkers = static_cast<size_t>(launch.world_size);
  // With torchrun's agent store the agent counts the workers itself.
  so.waitWorkers = !launch.agent_store;
  so.timeout = options.timeout;
  spdlog::info("dist: " + launch.describe() + " (" + launch.launcher + "), rendezvous at " +
               where + ", timeout " + seconds(options.timeout));
  c10::intrusive_ptr<c10d::Store> tcp;
  try {
    tcp = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, so);
  } catch (const std::exception& e) {
    if (so.isServer)
      throw Error("dist: rank 0 cannot host the rendezvous store on port " +
                  std::to_string(launch.master_port) + " or not every rank joined within " +
                  seconds(options.timeout) + " (MASTER_PORT; is the port in use?): " +
                  first_line(e.what()));
    throw Error("dist: " + launch.describe() + " cannot reach the rendezvous store at " + where +
                " within " + seconds(options.timeout) +
                " (MASTER_ADDR/MASTER_PORT; is rank 0 running?): " + first_line(e.what()));
  }
  // Keys of an earlier attempt of an elastic job must not be read as this one's.
  const char* restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
  impl.store = c10::make_intrusive<c10d::PrefixStore>(
      std::string("msam/attempt_") + (restart ? restart : "0"), tcp);
  impl.store->setTimeout(options.timeout);
  // Who is where, for the message when a collective fails.
  impl.store->set("pid/" + std::to_string(launch.rank),
                  bytes(impl.host + " " + std::to_string(getpid())));

  try {
    if (options.cuda) {
#ifdef MSAM_HAVE_NCCL
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      impl.backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl.store, launch.rank,
                                                                  launch.world_size, o);
#else
      throw Error("dist: this build of msam has no NCCL (LibTorch without CUDA/NCCL); "
                  "train on the CPU or build against a CUDA LibTorch");
#endif
    } else {
#ifndef MSAM_HAVE_GLOO
      throw Error("dist: this build of msam has no Gloo (gloo headers were not found): CPU "
                  "ranks cannot be connected");
#else
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      // Loopback jobs stay on loopback; elsewhere GLOO_SOCKET_IFNAME picks the interface as in
      // PyTorch, else the address this host's name resolves to.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (is_loopback(launch.master_addr))
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      o->threads = 2;
      impl.backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl.store, launch.rank,
                                                                  launch.world_size, o);
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    group->fail("connecting the process group", e.what());
  }
  spdlog::info("dist: " + launch.describe() + " connected (" +
               (options.cuda ? "NCCL" : "Gloo") + ")");
  return group;
}

void ProcessGroup::fail(const std::string& what, const std::string& cause) const {
  // What is known of the other ranks: a rank on this host whose process is gone has exited;
  // a store that does not answer means rank 0 (its host) is gone.
  std::string peers;
  try {
    for (int r = 0; r < size(); ++r) {
      if (r == rank()) continue;
      const std::string key = "pid/" + std::to_string(r);
      if (!impl_->store->check({key})) continue;
      const std::string info = text(impl_->store->get(key));
      const auto space = info.rfind(' ');
      const std::string host = info.substr(0, space);
      const int pid = std::atoi(info.c_str() + space + 1);
      if (host == impl_->host && pid > 0 && process_ended(pid))
        peers += "; rank " + std::to_string(r) + " (pid " + std::to_string(pid) +
                 ") has exited";
    }
  } catch (const std::exception&) {
    peers += "; the rendezvous store on rank 0 does not answer (rank 0 has exited?)";
  }
  throw Error("dist: " + launch_.describe() + ": " + what + " failed: " + first_line(cause) +
              peers +
              " (a rank that exits or hangs fails the others within dist.timeout = " +
              seconds(options_.timeout) + ")");
}

void ProcessGroup::all_reduce_sum(std::vector<at::Tensor>& tensors, const std::string& what) {
  if (tensors.empty()) return;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      impl_->backend->allreduce(one)->wait();
    }
  } catch (const std::exception& e) {
    fail(what, e.what());
  }
}

void ProcessGroup::broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) {
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      impl_->backend->broadcast(one, o)->wait();
    }
  } catch (const std::exception& e) {
    fail(what, e.what());
  }
}

void ProcessGroup::barrier(const std::string& what) {
  // An all-reduce of one number: the same on Gloo and NCCL, with the collective timeout.
  auto one = at::ones({1}, at::TensorOptions().device(
                               options_.cuda ? at::Device(at::kCUDA, launch_.local_rank)
                                             : at::Device(at::kCPU)));
  std::vector<at::Tensor> t{one};
  all_reduce_sum(t, what);
}

std::vector<std::string> ProcessGroup::all_gather(const std::string& value,
                                                  const std::string& what) {
  const std::string prefix = "gather/" + std::to_string(gathers_++) + "/";
  std::vector<std::string> out(static_cast<size_t>(size()));
  try {
    impl_->store->set(prefix + std::to_string(rank()), bytes(value));
    for (int r = 0; r < size(); ++r)
      out[static_cast<size_t>(r)] = text(impl_->store->get(prefix + std::to_string(r)));
  } catch (const std::exception& e) {
    fail(what, e.what());
  }
  // Rank 0 hosts the store: no rank may leave before every rank has read.
  barrier(what);
  return out;
}

}  // namespace msam::dist
