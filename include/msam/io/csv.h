// CSV tables, written atomically and read back for comparisons: a file format below train/
// and eval/, which both write tables with it.
#pragma once
#include <string>
#include <vector>

namespace msam::io {

// RFC 4180 fields: a field holding a comma, quote, CR or LF is quoted with quotes doubled.
std::string csv_escape(const std::string& field);
// Six significant digits, "nan" / "inf" / "-inf" for non-finite values.
std::string format_number(double value);

// Collects a header and rows in memory and writes them atomically on close(), so a run that
// fails half-way leaves no partial table (a writer destroyed unclosed writes nothing).
class CsvWriter {
 public:
  CsvWriter(std::string path, std::vector<std::string> header);
  // Throws msam::Error (naming the file) if the row width differs from the header's, or
  // after close().
  void add_row(const std::vector<std::string>& fields);
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  size_t width_;
  std::string text_;
  bool closed_ = false;
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // each as wide as header
  std::string source;                          // file it was read from, for errors

  // Position of the named column; throws msam::Error naming the file if absent.
  size_t column(const std::string& name) const;
};

// Parses RFC 4180 text (LF or CRLF, quoted fields may span lines, a leading UTF-8 BOM and
// blank lines are skipped). Errors name the source and the line: a row wider or narrower
// than the header, an unterminated quote, text after a closing quote, no header.
CsvTable parse_csv(const std::string& text, const std::string& source);
CsvTable read_csv(const std::string& path);

}  // namespace msam::io
