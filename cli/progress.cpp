#include "cli/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace q4jit::cli {

Progress::Progress(std::string label, int total)
    : label_(std::move(label)),
      total_(total),
      terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(int done, const std::string& extra) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > 0 ? elapsed * (total_ - done) / done : 0.0;
  const int decile = total_ > 0 ? done * 10 / total_ : 10;
  if (!terminal_ && decile == last_decile_) return;
  last_decile_ = decile;
  std::fprintf(stderr, "%s%s %d/%d  %.0f s elapsed, ETA %.0f s%s%s%s", terminal_ ? "\r" : "",
               label_.c_str(), done, total_, elapsed, eta, extra.empty() ? "" : "  ", extra.c_str(),
               terminal_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (terminal_) std::fputc('\n', stderr);
}

}  // namespace q4jit::cli
