// Enums spelled as words in configs, checkpoints, the command line and the HTTP API: one table
// of (value, name) pairs per enum, read both ways here.
#pragma once
#include <string>
#include <utility>

#include "msam/common/error.h"

namespace msam {

template <class E, size_t N>
const char* name_in(const std::pair<E, const char*> (&table)[N], E value) {
  for (const auto& [v, text] : table)
    if (v == value) return text;
  throw Error("invalid enum value " + std::to_string(static_cast<int>(value)));
}

// The value called `text`; anything else throws msam::Error naming `source`, what was asked
// (`what`, e.g. "click space") and the valid names.
template <class E, size_t N>
E parse_name(const std::pair<E, const char*> (&table)[N], const std::string& text,
             const std::string& what, const std::string& source) {
  std::string known;
  for (const auto& [v, spelling] : table) {
    if (text == spelling) return v;
    known += (known.empty() ? "" : ", ") + std::string(spelling);
  }
  throw file_error(source, what + " '" + text + "' is not one of " + known);
}

}  // namespace msam
