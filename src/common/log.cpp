#include "msam/common/log.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <cstdio>

namespace msam::log {
namespace {

constexpr const char* kPattern = "[%Y-%m-%d %H:%M:%S.%e] [%l] %v";

struct Sinks {
  std::shared_ptr<spdlog::sinks::stderr_sink_mt> terminal;
  // Sinks are added and removed while other threads may log: dist_sink locks around both.
  std::shared_ptr<spdlog::sinks::dist_sink_mt> files;
};

Sinks& sinks() {
  static Sinks s = [] {
    Sinks made{std::make_shared<spdlog::sinks::stderr_sink_mt>(),
               std::make_shared<spdlog::sinks::dist_sink_mt>()};
    auto logger = std::make_shared<spdlog::logger>(
        "msam", spdlog::sinks_init_list{made.terminal, made.files});
    logger->set_pattern(kPattern);
    // A killed run keeps every line it logged.
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(logger);
    return made;
  }();
  return s;
}

}  // namespace

void init(spdlog::level::level_enum level) {
  sinks();
  spdlog::set_level(level);
}

FileLog::FileLog(const std::string& path, bool append)
    : sink_(std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, !append)) {
  sink_->set_pattern(kPattern);
  sinks().files->add_sink(sink_);
}

FileLog::~FileLog() { sinks().files->remove_sink(sink_); }

void progress(const std::string& line, bool record, bool last) {
  auto& s = sinks();
  if (!isatty(2)) {
    if (record) spdlog::info(line);
    return;
  }
  if (!spdlog::should_log(spdlog::level::info)) return;
  const spdlog::details::log_msg msg("msam", spdlog::level::info, line);
  spdlog::memory_buf_t text;
  spdlog::pattern_formatter(kPattern, spdlog::pattern_time_type::local, "").format(msg, text);
  std::fprintf(stderr, "\r%.*s%s", static_cast<int>(text.size()), text.data(), last ? "\n" : "");
  if (record) s.files->log(msg);
}

}  // namespace msam::log
