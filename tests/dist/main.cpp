// The data-parallel tests' program: gtest, or one rank of a test job (`--dist-worker ...`).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dist_fixture.h"
#include "msam/common/log.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--dist-worker") {
    msam::log::init();
    try {
      return msam::test::run_dist_worker(std::vector<std::string>(argv, argv + argc));
    } catch (const std::exception& e) {
      spdlog::error(std::string("dist worker: ") + e.what());
      return 1;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
