#include "msam/io/csv.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "msam/common/error.h"
#include "msam/io/safetensors.h"

namespace msam::io {

// ---- CSV -----------------------------------------------------------------------------

std::string csv_escape(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  return buf;
}

CsvWriter::CsvWriter(std::string path, std::vector<std::string> header)
    : path_(std::move(path)), width_(header.size()) {
  if (header.empty()) throw file_error(path_, "CSV header has no columns");
  add_row(header);
}

void CsvWriter::add_row(const std::vector<std::string>& fields) {
  if (closed_) throw file_error(path_, "CSV row added after close()");
  if (fields.size() != width_)
    throw file_error(path_, "CSV row has " + std::to_string(fields.size()) +
                                " fields but the header has " + std::to_string(width_));
  // A lone empty field is quoted so the line is not blank (readers skip blank lines).
  if (fields.size() == 1 && fields[0].empty()) {
    text_ += "\"\"\n";
    return;
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) text_ += ',';
    text_ += csv_escape(fields[i]);
  }
  text_ += '\n';
}

void CsvWriter::close() {
  if (closed_) return;
  io::write_file_atomically(path_, text_);
  closed_ = true;
}

size_t CsvTable::column(const std::string& name) const {
  const auto it = std::find(header.begin(), header.end(), name);
  if (it == header.end()) throw file_error(source, "no column '" + name + "'");
  return static_cast<size_t>(it - header.begin());
}

CsvTable parse_csv(const std::string& text, const std::string& source) {
  auto fail = [&](size_t line, const std::string& problem) {
    return Error(source + ":" + std::to_string(line) + ": " + problem);
  };
  CsvTable table;
  table.source = source;
  const size_t n = text.size();
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  size_t line = 1;
  // Consumes a line ending (LF, CRLF or a lone CR) at i, if any.
  auto end_of_line = [&]() {
    if (i < n && text[i] == '\r') ++i;
    else if (i >= n || text[i] != '\n') return false;
    if (i < n && text[i] == '\n') ++i;
    ++line;
    return true;
  };
  bool have_header = false;
  while (i < n) {
    if (end_of_line()) continue;  // blank line
    const size_t record_line = line;
    std::vector<std::string> fields;
    while (true) {
      std::string field;
      if (i < n && text[i] == '"') {
        const size_t quote_line = line;
        ++i;
        while (true) {
          if (i >= n) throw fail(quote_line, "unterminated quoted field");
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          throw fail(line, "text after a closing quote");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"') throw fail(line, "quote inside an unquoted field");
          field += text[i++];
        }
      }
      fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      end_of_line();
      break;
    }
    if (!have_header) {
      std::set<std::string> seen;
      for (const std::string& h : fields)
        if (!seen.insert(h).second) throw fail(record_line, "duplicate column '" + h + "'");
      table.header = std::move(fields);
      have_header = true;
    } else {
      if (fields.size() != table.header.size())
        throw fail(record_line, "row has " + std::to_string(fields.size()) +
                                    " fields but the header has " +
                                    std::to_string(table.header.size()));
      table.rows.push_back(std::move(fields));
    }
  }
  if (!have_header) throw file_error(source, "empty CSV file, no header");
  return table;
}

CsvTable read_csv(const std::string& path) { return parse_csv(io::read_file(path), path); }

}  // namespace msam::io
