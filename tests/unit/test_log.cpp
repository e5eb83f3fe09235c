#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "fixtures.h"
#include "msam/common/log.h"

using namespace msam;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Whether this process holds `path` open: one of /proc/self/fd links to it.
bool held_open(const fs::path& path) {
  const auto target = fs::canonical(path);
  for (const auto& fd : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto link = fs::read_symlink(fd.path(), ec);
    if (!ec && link == target) return true;
  }
  return false;
}

class LogTest : public ::testing::Test {
 protected:
  void TearDown() override { log::init(spdlog::level::info); }
};

TEST_F(LogTest, FileGetsTimestampedLinesAtTheLevel) {
  const fs::path path = fs::path(test::temp_dir("log")) / "run.log";
  {
    const log::FileLog file(path.string(), false);
    log::init(spdlog::level::warn);
    spdlog::info("hidden info");
    spdlog::warn("shown warning {}", 1);
    log::init(spdlog::level::debug);
    spdlog::debug("shown debug");
    spdlog::trace("hidden trace");
  }
  const std::string text = read_text(path);
  EXPECT_EQ(text.find("hidden"), std::string::npos) << text;
  const std::regex line(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[(\w+)\] (.*))");
  std::istringstream lines(text);
  std::vector<std::pair<std::string, std::string>> got;
  for (std::string l; std::getline(lines, l);) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(l, m, line)) << l;
    got.emplace_back(m[1], m[2]);
  }
  const std::vector<std::pair<std::string, std::string>> want{{"warning", "shown warning 1"},
                                                              {"debug", "shown debug"}};
  EXPECT_EQ(got, want);
}

TEST_F(LogTest, RemovingTheFileLogClosesItAndStopsWriting) {
  const fs::path path = fs::path(test::temp_dir("log")) / "run.log";
  std::ofstream(path) << "earlier\n";
  {
    const log::FileLog file(path.string(), true);
    EXPECT_TRUE(held_open(path));
    spdlog::info("during");
  }
  EXPECT_FALSE(held_open(path));
  spdlog::info("after");
  const std::string text = read_text(path);
  EXPECT_EQ(text.rfind("earlier\n", 0), 0u) << "append mode keeps what was there";
  EXPECT_NE(text.find("] [info] during\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("after"), std::string::npos) << text;
}

TEST_F(LogTest, ProgressRecordsOnlyIntervalLinesInFiles) {
  const fs::path path = fs::path(test::temp_dir("log")) / "run.log";
  {
    const log::FileLog file(path.string(), false);
    log::progress("step 1", false, false);
    log::progress("step 2", true, false);
    log::progress("step 3", true, true);
  }
  const std::string text = read_text(path);
  EXPECT_EQ(text.find("step 1"), std::string::npos) << text;
  EXPECT_NE(text.find("] [info] step 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("] [info] step 3\n"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no terminal redraws in the file";
}

// On a terminal each step redraws one line in place; the file still gets the interval lines.
TEST_F(LogTest, ProgressRedrawsInPlaceOnATerminal) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  const int terminal = open(ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(terminal, 0);
  const fs::path path = fs::path(test::temp_dir("log")) / "run.log";
  const int saved = dup(2);
  dup2(terminal, 2);
  {
    const log::FileLog file(path.string(), false);
    log::progress("step 1", false, false);
    log::progress("step 2", true, true);
  }
  dup2(saved, 2);
  close(saved);
  char buf[512];
  const ssize_t n = read(master, buf, sizeof buf);
  close(terminal);
  close(master);
  ASSERT_GT(n, 0);
  const std::string shown(buf, static_cast<size_t>(n));
  const std::regex redraws(R"(\r\[[-0-9: .]+\] \[info\] step 1\r\[[-0-9: .]+\] \[info\] step 2\r?\n)");
  EXPECT_TRUE(std::regex_match(shown, redraws)) << shown;
  const std::string text = read_text(path);
  EXPECT_EQ(text.find("step 1"), std::string::npos) << text;
  EXPECT_NE(text.find("] [info] step 2\n"), std::string::npos) << text;
}

}  // namespace
