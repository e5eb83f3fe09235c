// Data-parallel tests: a small run on synthetic cases (no ITK), whose ranks are this test
// program started again in worker mode (`--dist-worker KIND ...`) with torchrun's variables.
#pragma once
#include <string>
#include <vector>

#include "msam/train/config.h"

namespace msam::test {

// A run small enough to train a few steps in seconds: 32³ crops of the synthetic cases at
// 1.5 mm, a one-block encoder, batch 2, three clicks per step, 1 CPU thread per rank.
train::Config dist_run_config(const std::string& data_dir, const std::string& output);

// Writes `cases` synthetic cases under data_dir (stand-in files for the sources, the
// prepared cache and the split): what the ranks then read without ITK.
void prepare_dist_data(const std::string& data_dir, int cases);

// The worker side: argv = {program, "--dist-worker", kind, args...}. Returns the exit code.
int run_dist_worker(const std::vector<std::string>& args);

}  // namespace msam::test
