#include "msam/serve/server.h"

#include <httplib.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include <spdlog/spdlog.h>

#include "msam/common/error.h"
#include "msam/imageio/image_io.h"
#include "msam/serve/scan_files.h"

namespace fs = std::filesystem;

namespace msam::serve {
namespace {

using nlohmann::json;

// A request that gets `status` and {"error": message}.
struct HttpError : std::runtime_error {
  HttpError(int s, const std::string& message) : std::runtime_error(message), status(s) {}
  int status;
};

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void fail(httplib::Response& res, int status, const std::string& message) {
  reply(res, status, {{"error", message}});
}

// Runs `handler`, turning every exception into a JSON error: the server keeps serving.
template <class Handler>
httplib::Server::Handler guarded(Handler handler) {
  return [handler](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const HttpError& e) {
      fail(res, e.status, e.what());
    } catch (const Error& e) {
      fail(res, 422, e.what());
    } catch (const c10::Error& e) {
      fail(res, 500, e.what_without_backtrace());
    } catch (const std::exception& e) {
      fail(res, 500, e.what());
    }
  };
}

json point_json(const data::Index3& p) { return json::array({p[0], p[1], p[2]}); }

json summary_json(const interaction::SegmentationSummary& s) {
  json windows = json::array();
  for (const auto& w : s.windows)
    windows.push_back({{"center", point_json(w.center)}, {"voxels", w.voxels}});
  return {{"clicks", s.clicks},
          {"voxels", s.voxels},
          {"volume_mm3", s.volume_mm3},
          {"bbox", s.bbox ? json::array({point_json((*s.bbox)[0]), point_json((*s.bbox)[1])})
                          : json(nullptr)},
          {"windows", windows},
          {"contained", s.contained},
          {"ms", s.milliseconds}};
}

json session_json(const std::string& id, const interaction::Session& s) {
  const auto& g = s.scan().geometry;
  json clicks = json::array();
  for (const auto& c : s.clicks())
    clicks.push_back({{"point", json::array({c.point[0], c.point[1], c.point[2]})},
                      {"label", c.label == interaction::kForeground ? "fg" : "bg"},
                      {"space", interaction::name(c.space)}});
  return {{"id", id},
          {"source", s.scan().source},
          {"size", json(s.scan().data.sizes().vec())},
          {"spacing", json(std::vector<double>(g.spacing.begin(), g.spacing.end()))},
          {"origin", json(std::vector<double>(g.origin.begin(), g.origin.end()))},
          {"direction", json(std::vector<double>(g.direction.begin(), g.direction.end()))},
          {"clicks", clicks},
          {"mask", summary_json(s.summary())}};
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

json parse_body(const httplib::Request& req) {
  try {
    return json::parse(req.body);
  } catch (const json::exception& e) {
    throw HttpError(400, std::string("request body is not JSON: ") + e.what());
  }
}

}  // namespace

void check_exposure(const ServerOptions& o) {
  if (!is_loopback(o.host) && o.token.empty())
    throw Error("--host " + o.host +
                ": serving beyond this machine needs --token (clients send it as a Bearer token)");
}

Server::Server(model::MSAM model, ServerOptions options)
    : model_(std::move(model)),
      options_(std::move(options)),
      store_(options_.max_sessions, options_.session_ttl),
      http_(std::make_unique<httplib::Server>()),
      torch_threads_(at::get_num_threads()) {
  check_exposure(options_);
  if (!options_.data_root.empty() && !fs::is_directory(options_.data_root))
    throw file_error(options_.data_root, "--data-root is not a folder");
  http_->set_payload_max_length(options_.max_upload_bytes);
  routes();
  model_thread_ = std::thread([this] {
    at::set_num_threads(torch_threads_);
    std::unique_lock<std::mutex> lock(model_queue_mutex_);
    while (true) {
      model_wake_.wait(lock, [this] {
        return stopping_ || !model_queue_.empty() || !prepare_queue_.empty();
      });
      if (!model_queue_.empty()) {
        auto work = std::move(model_queue_.front());
        model_queue_.pop_front();
        lock.unlock();
        work();
        lock.lock();
      } else if (stopping_) {
        return;  // nothing a request waits for is left
      } else {
        auto stored = std::move(prepare_queue_.front());
        prepare_queue_.pop_front();
        lock.unlock();
        prepare(stored);
        lock.lock();
      }
    }
  });
  reaper_ = std::thread([this] {
    const auto period = std::min<std::chrono::seconds>(
        std::chrono::seconds(10), std::max<std::chrono::seconds>(std::chrono::seconds(1),
                                                                 options_.session_ttl / 2));
    std::unique_lock<std::mutex> lock(reaper_mutex_);
    while (!stopping_) {
      reaper_wake_.wait_for(lock, period);
      store_.expire(SessionStore::Clock::now());
    }
  });
}

Server::~Server() {
  stop();
  if (reaper_.joinable()) reaper_.join();
  if (model_thread_.joinable()) model_thread_.join();
}

void Server::on_model_thread(const std::function<void()>& work) {
  std::packaged_task<void()> task(work);
  auto done = task.get_future();
  {
    std::lock_guard<std::mutex> lock(model_queue_mutex_);
    model_queue_.emplace_back([&task] { task(); });
  }
  model_wake_.notify_one();
  done.get();  // rethrows what `work` threw
}

void Server::queue_prepare(const std::shared_ptr<StoredSession>& stored) {
  {
    std::lock_guard<std::mutex> lock(model_queue_mutex_);
    for (const auto& queued : prepare_queue_)
      if (queued.lock() == stored) return;
    prepare_queue_.push_back(stored);
  }
  model_wake_.notify_one();
}

void Server::prepare(const std::weak_ptr<StoredSession>& weak) {
  auto stored = weak.lock();
  if (!stored) return;  // deleted or expired meanwhile
  // A request that holds the session does its own work (and queues this again after it).
  std::unique_lock<std::mutex> lock(stored->mutex, std::try_to_lock);
  if (!lock.owns_lock()) return;
  try {
    stored->session.prepare_next_click();
  } catch (const std::exception& e) {
    // The click itself will compute the same and report any error to its request.
    spdlog::warn("preparing the next click of {} failed: {}", stored->session.scan().source,
                 e.what());
  }
}

int Server::bind() {
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
    if (port_ < 0) throw Error("--host " + options_.host + ": cannot bind a port");
  } else {
    if (!http_->bind_to_port(options_.host, options_.port))
      throw Error("--host " + options_.host + " --port " + std::to_string(options_.port) +
                  ": cannot bind (in use, or not an address of this machine)");
    port_ = options_.port;
  }
  return port_;
}

void Server::run() { http_->listen_after_bind(); }

void Server::stop() {
  stopping_ = true;
  // Taking each waiter's mutex after setting the flag means that no waiter misses it.
  { std::lock_guard<std::mutex> lock(reaper_mutex_); }
  reaper_wake_.notify_all();
  { std::lock_guard<std::mutex> lock(model_queue_mutex_); }
  model_wake_.notify_all();
  http_->stop();
}

void Server::routes() {
  auto& http = *http_;

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // OpenMP's thread count is a per-thread setting: the server's worker threads would start
    // with the default, not with what `msam --threads` set on the main thread.
    if (at::get_num_threads() != torch_threads_) at::set_num_threads(torch_threads_);
    // The token guards the API; the health check and the viewer's files stay open.
    if (options_.token.empty() || req.path.rfind("/api/", 0) != 0 || req.path == "/api/health")
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") != "Bearer " + options_.token) {
      fail(res, 401, "missing or wrong token (send \"Authorization: Bearer <token>\")");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses set outside a handler (413 for an oversized upload, 404 for an unknown route)
  // get a JSON body too.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      fail(res, 413, "upload larger than --max-upload-mb (" +
                         std::to_string(options_.max_upload_bytes >> 20) + " MiB)");
    else if (res.status == 404)
      fail(res, 404, "no such endpoint or file: " + req.method + " " + req.path);
    else
      fail(res, res.status, "request failed with HTTP status " + std::to_string(res.status));
  });

  http.Get("/api/health", guarded([this](const httplib::Request&, httplib::Response& res) {
    reply(res, 200, {{"status", "ok"}, {"sessions", store_.size()}});
  }));

  http.Get("/api/info", guarded([this](const httplib::Request&, httplib::Response& res) {
    const auto& so = options_.session;
    reply(res, 200,
          {{"model", json::parse(model_->config().to_json())},
           {"checkpoint", options_.checkpoint},
           {"device", so.device.str()},
           {"precision", options_.precision},
           {"threshold", so.threshold},
           {"multi_click", so.multi_click},
           {"spacing", so.spacing ? json(std::vector<double>(so.spacing->begin(), so.spacing->end()))
                                  : json(nullptr)},
           {"sessions", store_.size()},
           {"max_sessions", store_.max_sessions()},
           {"session_ttl_s", store_.idle_ttl().count()},
           {"max_upload_mb", options_.max_upload_bytes >> 20},
           {"data_root", !options_.data_root.empty()}});
  }));

  http.Post("/api/sessions", guarded([this](const httplib::Request& req, httplib::Response& res) {
    data::Volume scan;
    if (req.get_header_value("Content-Type").rfind("application/json", 0) == 0) {
      const auto body = parse_body(req);
      if (!body.is_object() || !body.contains("path") || !body["path"].is_string())
        throw HttpError(400, "expected {\"path\": \"<file or DICOM folder under the data root>\"}");
      std::optional<int64_t> channel;
      if (body.contains("channel") && !body["channel"].is_null()) {
        if (!body["channel"].is_number_unsigned())
          throw HttpError(400, "\"channel\" must be a channel number (0, 1, ...), got " +
                                   body["channel"].dump());
        channel = body["channel"].get<int64_t>();
      }
      if (options_.data_root.empty())
        throw HttpError(403, "this server has no --data-root: upload the scan instead");
      std::string path;
      try {
        path = resolve_under_root(options_.data_root, body["path"].get<std::string>());
      } catch (const PathOutsideRoot& e) {
        throw HttpError(403, e.what());
      } catch (const PathNotFound& e) {
        throw HttpError(404, e.what());
      }
      scan = imageio::read_image(path, channel);
      scan.source = body["path"].get<std::string>();
    } else {
      if (req.body.empty())
        throw HttpError(400, "empty request: send the scan as the body or {\"path\": ...} as JSON");
      const auto name = req.has_header("X-Filename") ? req.get_header_value("X-Filename")
                                                     : std::string("upload");
      std::optional<int64_t> channel;
      if (req.has_param("channel")) {
        const auto text = req.get_param_value("channel");
        if (text.empty() || text.size() > 6 || text.find_first_not_of("0123456789") != std::string::npos)
          throw HttpError(400, "?channel= must be a channel number (0, 1, ...), got '" + text + "'");
        channel = std::stoll(text);
      }
      scan = read_scan_bytes(req.body, name, channel);
    }
    interaction::Session session(model_, std::move(scan), options_.session);
    std::string id;
    try {
      id = store_.add(std::move(session));
    } catch (const SessionLimit& e) {
      throw HttpError(503, e.what());
    }
    auto stored = store_.get(id);
    std::lock_guard<std::mutex> lock(stored->mutex);
    reply(res, 201, session_json(id, stored->session));
  }));

  // The session named by the path's first group; 404 when there is none.
  auto session_of = [this](const httplib::Request& req) {
    auto stored = store_.get(req.matches[1]);
    if (!stored) throw HttpError(404, "no session " + std::string(req.matches[1]));
    return stored;
  };
  const std::string id_pattern = "/api/sessions/([0-9a-f]+)";

  http.Get(id_pattern, guarded([=](const httplib::Request& req, httplib::Response& res) {
    auto stored = session_of(req);
    std::lock_guard<std::mutex> lock(stored->mutex);
    reply(res, 200, session_json(req.matches[1], stored->session));
  }));

  http.Delete(id_pattern, guarded([this](const httplib::Request& req, httplib::Response& res) {
    if (!store_.remove(req.matches[1]))
      throw HttpError(404, "no session " + std::string(req.matches[1]));
    reply(res, 200, {{"deleted", std::string(req.matches[1])}});
  }));

  // A change of the clicks: the session's lock, then the model's.
  auto change = [this, session_of](auto apply) {
    return guarded([this, session_of, apply](const httplib::Request& req, httplib::Response& res) {
      auto stored = session_of(req);
      {
        std::lock_guard<std::mutex> lock(stored->mutex);
        interaction::SegmentationSummary summary;
        on_model_thread([&] { summary = apply(req, stored->session); });
        reply(res, 200, summary_json(summary));
      }
      queue_prepare(stored);
    });
  };
  http.Post(id_pattern + "/clicks", change([](const httplib::Request& req, interaction::Session& s) {
    interaction::UserClick click;
    try {
      click = interaction::user_click_from_json(req.body, "click");
    } catch (const Error& e) {
      throw HttpError(400, e.what());
    }
    return s.add_click(click);
  }));
  http.Post(id_pattern + "/undo", change([](const httplib::Request&, interaction::Session& s) {
    return s.undo();
  }));
  http.Post(id_pattern + "/reset", change([](const httplib::Request&, interaction::Session& s) {
    return s.reset();
  }));

  http.Get(id_pattern + "/mask", guarded([=](const httplib::Request& req, httplib::Response& res) {
    const auto format = req.has_param("format") ? req.get_param_value("format") : "nii.gz";
    if (format != "nii.gz" && format != "nii" && format != "nrrd" && format != "mha")
      throw HttpError(400, "format must be nii.gz, nii, nrrd or mha, got '" + format + "'");
    auto stored = session_of(req);
    std::string bytes;
    {
      std::lock_guard<std::mutex> lock(stored->mutex);
      bytes = volume_bytes(stored->session.mask(), "." + format);
    }
    res.set_header("Content-Disposition", "attachment; filename=\"mask." + format + "\"");
    res.set_content(std::move(bytes), "application/octet-stream");
  }));

  http.Get(id_pattern + "/scan", guarded([=](const httplib::Request& req, httplib::Response& res) {
    auto stored = session_of(req);
    std::lock_guard<std::mutex> lock(stored->mutex);
    if (stored->scan_nifti.empty())
      stored->scan_nifti = volume_bytes(stored->session.scan(), ".nii.gz");
    res.set_header("Content-Disposition", "attachment; filename=\"scan.nii.gz\"");
    res.set_content(stored->scan_nifti, "application/octet-stream");
  }));

  // The viewer: its own three files and NiiVue's build, nothing else of the folder (its
  // node_modules hold the test tools too).
  if (!options_.web_root.empty()) {
    const fs::path web(options_.web_root);
    const auto niivue = web / "node_modules/@niivue/niivue/dist";
    if (!fs::is_regular_file(web / "index.html") || !fs::is_directory(niivue))
      throw file_error(options_.web_root,
                       "the viewer's files are incomplete (run tools/setup.sh, which installs "
                       "NiiVue with npm)");
    for (const auto& [route, file, type] :
         {std::tuple{"/", "index.html", "text/html"},
          std::tuple{"/app.js", "app.js", "text/javascript"},
          std::tuple{"/style.css", "style.css", "text/css"}}) {
      const auto path = web / file;
      const std::string content_type = type;
      http.Get(route, [path, content_type](const httplib::Request&, httplib::Response& res) {
        std::ifstream in(path, std::ios::binary);
        std::ostringstream body;
        body << in.rdbuf();
        res.set_content(body.str(), content_type.c_str());
      });
    }
    http.set_mount_point("/niivue", niivue.string());
  }
}

namespace {
int signal_pipe[2] = {-1, -1};
extern "C" void on_stop_signal(int signal) {
  const unsigned char s = static_cast<unsigned char>(signal);
  [[maybe_unused]] const auto n = ::write(signal_pipe[1], &s, 1);  // async-signal-safe
}
}  // namespace

int run_until_signalled(Server& server) {
  // Whichever thread a signal lands on, the handler only writes to a pipe; a watcher thread
  // reads it and stops the server from ordinary code.
  if (::pipe(signal_pipe) != 0) throw Error("cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  int received = 0;
  std::thread watcher([&] {
    unsigned char s = 0;
    if (::read(signal_pipe[0], &s, 1) == 1) received = s;
    server.stop();
  });
  server.run();
  // run() also returns when the server failed; wake the watcher then.
  const unsigned char none = 0;
  [[maybe_unused]] const auto n = ::write(signal_pipe[1], &none, 1);
  watcher.join();
  ::close(signal_pipe[0]);
  ::close(signal_pipe[1]);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return received;
}

}  // namespace msam::serve
