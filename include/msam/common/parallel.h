// A minimal fork-join loop over std::thread. LibTorch's intra-op pool defaults to one thread
// on some installs (BUILD-NOTES.md), so CPU kernels that must use every core start their own.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace msam {

// Threads to use for `requested` (0: all hardware threads), never more than `work_items`.
inline int resolve_threads(int requested, int64_t work_items) {
  int64_t n = requested > 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
  return static_cast<int>(std::max<int64_t>(1, std::min(n, work_items)));
}

// Calls body(begin, end) on contiguous chunks covering [0, n) from `threads` threads and
// rethrows the first exception any chunk raised.
template <class Body>
void parallel_for(int64_t n, int threads, const Body& body) {
  if (n <= 0) return;
  const int t = resolve_threads(threads, n);
  if (t == 1) {
    body(int64_t{0}, n);
    return;
  }
  std::vector<std::exception_ptr> errors(t);
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  auto chunk = [&](int i) {
    try {
      body(n * i / t, n * (i + 1) / t);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  for (int i = 1; i < t; ++i) pool.emplace_back(chunk, i);
  chunk(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace msam
