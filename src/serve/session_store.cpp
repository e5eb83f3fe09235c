#include "msam/serve/session_store.h"

#include <cstdio>
#include <random>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace msam::serve {
namespace {

std::string random_id() {
  static std::mutex mutex;
  static std::random_device device;
  std::lock_guard<std::mutex> lock(mutex);
  char buf[33];
  for (int i = 0; i < 4; ++i) std::snprintf(buf + 8 * i, 9, "%08x", device());
  return buf;
}

}  // namespace

std::string SessionStore::add(interaction::Session session) {
  auto stored = std::make_shared<StoredSession>(std::move(session));
  std::lock_guard<std::mutex> lock(mutex_);
  if (slots_.size() >= max_sessions_)
    throw SessionLimit("all " + std::to_string(max_sessions_) +
                       " sessions are in use: delete one or wait for an idle one to expire");
  std::string id;
  do id = random_id();
  while (slots_.count(id));
  slots_[id] = Slot{std::move(stored), Clock::now()};
  return id;
}

std::shared_ptr<StoredSession> SessionStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = slots_.find(id);
  if (it == slots_.end()) return nullptr;
  it->second.last_used = Clock::now();
  return it->second.stored;
}

bool SessionStore::remove(const std::string& id) {
  std::shared_ptr<StoredSession> gone;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = slots_.find(id);
    if (it == slots_.end()) return false;
    gone = std::move(it->second.stored);
    slots_.erase(it);
  }
  // A request still using it keeps it alive until it finishes; the last owner frees it.
  gone.reset();
  release_free_memory();
  return true;
}

size_t SessionStore::expire(Clock::time_point now) {
  std::vector<std::shared_ptr<StoredSession>> gone;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = slots_.begin(); it != slots_.end();) {
      if (now - it->second.last_used > idle_ttl_) {
        gone.push_back(std::move(it->second.stored));
        it = slots_.erase(it);
      } else {
        ++it;
      }
    }
  }
  const size_t n = gone.size();
  gone.clear();
  if (n > 0) release_free_memory();
  return n;
}

size_t SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return slots_.size();
}

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace msam::serve
