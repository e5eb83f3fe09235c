// `msam train --nproc N`: N ranks on this machine for users without torchrun or SLURM. The
// ranks are copies of this program given torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT = a free port).
#pragma once
#include <string>
#include <vector>

namespace msam::dist {

// A TCP port on 127.0.0.1 that nothing listens on now.
int free_port();

// This process's command line (/proc/self/cmdline) with args[0] replaced by the absolute path
// of its executable, so that a rank runs the very same program.
std::vector<std::string> own_command_line();

// Starts `nproc` ranks running `args` (args[0] is the program) and waits for all of them.
// When a rank fails (non-zero exit or a signal) the launcher says which one and how, stops the
// others (SIGTERM, SIGKILL after 30 s) and returns that rank's exit code (128 + signal for a
// signal). Returns 0 when every rank succeeds.
int run_local_ranks(int nproc, const std::vector<std::string>& args);

}  // namespace msam::dist
