// The server's interactive sessions: bounded in number and idle time, each used by one request
// at a time, freed when deleted or expired.
#pragma once
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "msam/interaction/session.h"

namespace msam::serve {

struct StoredSession {
  explicit StoredSession(interaction::Session s) : session(std::move(s)) {}
  std::mutex mutex;  // held for every use of `session`
  interaction::Session session;
  std::string scan_nifti;  // the scan as .nii.gz bytes, written once for the viewer
};

// Thrown by SessionStore::add at the session limit.
struct SessionLimit : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class SessionStore {
 public:
  using Clock = std::chrono::steady_clock;

  SessionStore(size_t max_sessions, std::chrono::seconds idle_ttl)
      : max_sessions_(max_sessions), idle_ttl_(idle_ttl) {}

  // A new id (128 random bits, hex) for `session`. Throws SessionLimit when max_sessions are
  // open.
  std::string add(interaction::Session session);
  // The session, marked as used now; nullptr for an unknown or expired id.
  std::shared_ptr<StoredSession> get(const std::string& id);
  bool remove(const std::string& id);
  // Removes the sessions idle for longer than the ttl at `now`; returns how many.
  size_t expire(Clock::time_point now);
  size_t size() const;
  size_t max_sessions() const { return max_sessions_; }
  std::chrono::seconds idle_ttl() const { return idle_ttl_; }

 private:
  struct Slot {
    std::shared_ptr<StoredSession> stored;
    Clock::time_point last_used;
  };
  const size_t max_sessions_;
  const std::chrono::seconds idle_ttl_;
  mutable std::mutex mutex_;
  std::map<std::string, Slot> slots_;
};

// Gives freed heap pages back to the operating system (glibc), so that a long-running server's
// memory follows its open sessions.
void release_free_memory();

}  // namespace msam::serve
