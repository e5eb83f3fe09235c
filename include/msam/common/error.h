#pragma once
#include <stdexcept>
#include <string>

namespace msam {

// Every user-facing failure (bad file, bad config, bad click) is an msam::Error whose
// message names the offending file or key and what is wrong with it.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "<path>: <problem>", the form every file-related error takes.
inline Error file_error(const std::string& path, const std::string& problem) {
  return Error(path + ": " + problem);
}

}  // namespace msam
