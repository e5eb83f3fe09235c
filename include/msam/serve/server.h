// `msam serve`: interactive segmentation over HTTP/1.1 + JSON, and the browser viewer.
//
//   POST   /api/sessions              scan bytes (NIfTI, NRRD, MHA; X-Filename names it) or
//                                     {"path": "..."} under --data-root → the session
//   GET    /api/sessions/{id}         size, geometry, clicks, current mask summary
//   POST   /api/sessions/{id}/clicks  {"point": [x, y, z], "label": "fg"|"bg",
//                                     "space": "voxel"|"lps"|"ras"} → mask summary
//   POST   /api/sessions/{id}/undo    → mask summary
//   POST   /api/sessions/{id}/reset   → mask summary
//   GET    /api/sessions/{id}/mask    .nii.gz in the scan's geometry (?format=nrrd|nii|mha)
//   GET    /api/sessions/{id}/scan    the scan as .nii.gz (what the viewer shows)
//   DELETE /api/sessions/{id}
//   GET    /api/health, GET /api/info
//
// Errors are {"error": "..."}: 400 bad request, 401 missing/wrong token, 403 path outside the
// data root, 404 unknown session or file, 413 upload too large, 422 click outside the scan or
// unreadable scan, 503 at the session limit. Model work is serialised (one model, one device);
// requests that need no model (health, static files, masks) are answered meanwhile. Between a
// session's clicks, while no request waits for the model, the model thread prepares that
// session's next click (on the CPU: the Mask-Enhanced Adapter pass of the new mask), so that
// the click a person makes next costs the mask decoder alone.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "msam/interaction/session.h"
#include "msam/model/msam.h"
#include "msam/serve/session_store.h"

namespace httplib {
class Server;
}

namespace msam::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8765;  // 0: any free port (see Server::port)
  std::string token;  // non-empty: API requests need "Authorization: Bearer <token>"
  std::string data_root;  // sessions may open scans under it by path; empty: uploads only
  size_t max_sessions = 8;
  std::chrono::seconds session_ttl{1800};  // idle sessions are closed after this
  size_t max_upload_bytes = 1024ull << 20;
  std::string web_root;  // the viewer's files; empty: no viewer
  std::string checkpoint;  // shown by /api/info
  std::string precision = "fp32";
  interaction::SessionOptions session;  // preprocessing, threshold, device
};

// Throws msam::Error for a bind address other than loopback without a token.
void check_exposure(const ServerOptions& options);

class Server {
 public:
  Server(model::MSAM model, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket (msam::Error when it cannot); returns the port, which matters with port 0.
  int bind();
  // Serves until stop(); call bind() first.
  void run();
  // Thread-safe; run() returns after the requests in flight are answered.
  void stop();
  int port() const { return port_; }
  SessionStore& sessions() { return store_; }

 private:
  void routes();

  model::MSAM model_;
  ServerOptions options_;
  SessionStore store_;
  std::unique_ptr<httplib::Server> http_;
  const int torch_threads_;  // LibTorch's CPU threads where the server was made
  // Model work runs on one thread, in arrival order: it is serialised, and it keeps one warm
  // OpenMP team and allocator arena instead of one per request thread (measured: a click
  // on a request thread took 20–25 ms longer at the median, up to 120 ms at p95).
  std::mutex model_queue_mutex_;
  std::condition_variable model_wake_;
  std::deque<std::function<void()>> model_queue_;
  // Sessions whose next click can be prepared (Session::prepare_next_click) while nobody
  // waits: the model thread takes them only when no request's work is queued.
  std::deque<std::weak_ptr<StoredSession>> prepare_queue_;
  std::thread model_thread_;
  // Runs `work` on the model thread and waits for it; its exception comes back here.
  void on_model_thread(const std::function<void()>& work);
  void queue_prepare(const std::shared_ptr<StoredSession>& stored);
  static void prepare(const std::weak_ptr<StoredSession>& stored);
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex reaper_mutex_;
  std::condition_variable reaper_wake_;
  std::thread reaper_;  // closes idle sessions
};

// Runs `server` until SIGINT or SIGTERM, then stops it cleanly (the requests in flight are
// answered, the sessions freed). Returns the signal's number.
int run_until_signalled(Server& server);

}  // namespace msam::serve
