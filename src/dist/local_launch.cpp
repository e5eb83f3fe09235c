#include "msam/dist/local_launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/dist/launch.h"

namespace msam::dist {

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("launch: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  if (!ok) throw Error(std::string("launch: cannot find a free port: ") + std::strerror(errno));
  return ntohs(addr.sin_port);
}

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(in, arg, '\0')) args.push_back(arg);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (args.empty() || ec)
    throw Error("launch: cannot read this program's command line from /proc/self");
  args[0] = exe.string();
  return args;
}

namespace {

std::string how(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

int exit_code(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

}  // namespace

int run_local_ranks(int nproc, const std::vector<std::string>& args) {
  if (nproc < 1) throw Error("--nproc must be ≥ 1, got " + std::to_string(nproc));
  if (args.empty()) throw Error("launch: no program to run");
  const int port = free_port();
  spdlog::info("launch: " + std::to_string(nproc) + " local ranks, rendezvous at 127.0.0.1:" +
               std::to_string(port));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  auto stop_all = [&](int sig) {
    for (auto pid : pids)
      if (pid > 0) kill(pid, sig);
  };
  auto env = process_environment();
  // A launcher inside a launcher must not read its own rank as the children's.
  for (const char* k : {"SLURM_PROCID", "SLURM_NTASKS", "TORCHELASTIC_USE_AGENT_STORE"})
    env.erase(k);
  env["WORLD_SIZE"] = env["LOCAL_WORLD_SIZE"] = std::to_string(nproc);
  env["MASTER_ADDR"] = "127.0.0.1";
  env["MASTER_PORT"] = std::to_string(port);
  for (int r = 0; r < nproc; ++r) {
    env["RANK"] = env["LOCAL_RANK"] = std::to_string(r);
    std::vector<std::string> kv;
    for (const auto& [k, v] : env) kv.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : kv) envp.push_back(s.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) {
      stop_all(SIGTERM);
      for (auto p : pids)
        if (p > 0) waitpid(p, nullptr, 0);
      throw Error("launch: cannot start rank " + std::to_string(r) + " (" + args[0] +
                  "): " + std::strerror(rc));
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  int result = 0, running = nproc;
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int rank = -1;
    for (int r = 0; r < nproc; ++r)
      if (pids[static_cast<size_t>(r)] == pid) rank = r;
    if (rank < 0) continue;
    pids[static_cast<size_t>(rank)] = -1;
    --running;
    if (status == 0 || result != 0) continue;
    result = exit_code(status);
    spdlog::error("launch: rank " + std::to_string(rank) + " " + how(status) +
                  "; stopping the other ranks");
    stop_all(SIGTERM);
    // Ranks that ignore SIGTERM (stuck in a collective) are killed after a grace period.
    std::thread([pids, nproc]() mutable {
      std::this_thread::sleep_for(std::chrono::seconds(30));
      for (int r = 0; r < nproc; ++r)
        if (pids[static_cast<size_t>(r)] > 0) kill(pids[static_cast<size_t>(r)], SIGKILL);
    }).detach();
  }
  return result;
}

}  // namespace msam::dist
