// A progress line on stderr for long work (perplexity chunks, tuning candidates): redrawn in
// place on a terminal, one line per 10% otherwise, with an ETA from the elapsed time.
#pragma once

#include <chrono>
#include <string>

namespace q4jit::cli {

class Progress {
 public:
  Progress(std::string label, int total);
  // Call after each step; extra is appended to the line (e.g. a running value).
  void update(int done, const std::string& extra = "");
  // Ends the line on a terminal.
  void finish();

 private:
  std::string label_;
  int total_;
  int last_decile_ = -1;
  bool terminal_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace q4jit::cli
