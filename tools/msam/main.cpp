// msam: train, evaluate and run M-SAM. Each subcommand lives in its own file.
#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>

#include "command.h"
#include "msam/common/error.h"
#include "msam/common/log.h"

namespace msam::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace msam::cli

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // glibc hands freed blocks above its mmap threshold back to the OS and trims the heap top,
  // so each fresh activation tensor page-faults anew: a third of the CPU encoder's time on
  // the development machine. Keep blocks up to 32 MiB (glibc's maximum) on the heap.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  msam::log::init();
  CLI::App app{"msam: Mask-Enhanced Segment Anything Model for 3D lesion segmentation"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads for LibTorch (default: all cores)");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "what stderr and the run's log file show")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  auto& commands = msam::cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> actions;
  for (auto& c : commands) {
    auto* sub = app.add_subcommand(c.name, c.description);
    actions[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help (and its kin) is a success: CLI11 prints it. Every other parse or validation
    // failure is bad input like any other, so it gets the one exit code and message form
    // the README promises instead of CLI11's per-kind codes (105 for a missing file).
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    spdlog::error("msam: error: " + message);
    return 2;
  }
  msam::log::init(spdlog::level::from_str(log_level));
  // Ranks sharing a machine share its cores (torchrun, srun and --nproc set LOCAL_WORLD_SIZE).
  const char* local_ranks = std::getenv("LOCAL_WORLD_SIZE");
  const int sharing = local_ranks ? std::max(1, std::atoi(local_ranks)) : 1;
  torch::set_num_threads(
      threads > 0 ? threads
                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / sharing));
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const msam::Error& e) {
    spdlog::error(std::string("msam: error: ") + e.what());
    return 2;
  } catch (const c10::Error& e) {
    spdlog::error(std::string("msam: error: ") + e.what_without_backtrace());
    return 2;
  }
  return 0;
}
