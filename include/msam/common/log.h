// msam logs through spdlog's default logger (call spdlog::info, spdlog::warn, ... directly);
// this module sets that logger up: timestamped lines on stderr, copied into the files of
// the FileLogs alive (a run's train.log, an evaluation's eval.log).
#pragma once
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace msam::log {

// Makes the default logger msam's (stderr and the file logs, "[date time.ms] [level] text",
// each line flushed) on the first call, and sets its level on every call. FileLog and
// progress call it too, so library code that logs before main's call still gets this form.
void init(spdlog::level::level_enum level = spdlog::level::info);

// Appends (append) or writes anew every log line to `path` from now until destruction,
// when the file is closed.
class FileLog {
 public:
  FileLog(const std::string& path, bool append);
  ~FileLog();
  FileLog(const FileLog&) = delete;
  FileLog& operator=(const FileLog&) = delete;

 private:
  std::shared_ptr<spdlog::sinks::sink> sink_;
};

// A progress line (info). On a terminal it is redrawn in place (`last` ends it with a
// newline) and only `record`ed lines reach the file logs; elsewhere `record`ed lines are
// logged as usual and the others dropped, so files and pipes get one line per interval.
void progress(const std::string& line, bool record, bool last);

}  // namespace msam::log
