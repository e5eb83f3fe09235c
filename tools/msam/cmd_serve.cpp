// msam serve: interactive segmentation sessions over HTTP and the browser viewer
// (msam/serve/server.h has the API). Reads scans: needs ITK.
#ifdef MSAM_HAVE_ITK
#include <torch/torch.h>

#include <cstdio>

#include "cli_support.h"
#include "command.h"
#include "msam/common/log.h"
#include "msam/common/error.h"
#include "msam/serve/server.h"

namespace msam::cli {
namespace {

struct Options {
  std::string checkpoint, device = "cpu", precision = "fp32";
  serve::ServerOptions server;
  SessionFlags session;
  int64_t ttl_s = 1800, max_upload_mb = 1024;
  int64_t max_sessions = 8;
};

int run(Options o) {
  auto& so = o.server.session;
  so.device = torch::Device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  so.amp_dtype = autocast_dtype(o.precision, so.device);
  set_session_options(o.checkpoint, o.session, so);
  o.server.checkpoint = o.checkpoint;
  o.server.precision = o.precision;
  o.server.max_sessions = static_cast<size_t>(o.max_sessions);
  o.server.session_ttl = std::chrono::seconds(o.ttl_s);
  o.server.max_upload_bytes = static_cast<size_t>(o.max_upload_mb) << 20;
  serve::check_exposure(o.server);

  std::string summary;
  auto model = load_inference_model(o.checkpoint, so.device, &summary);
  spdlog::info(summary);
  serve::Server server(model, o.server);
  const int port = server.bind();
  std::printf("msam serve: listening on http://%s:%d\n", o.server.host.c_str(), port);
  std::fflush(stdout);
  const int signal = serve::run_until_signalled(server);
  spdlog::info("msam serve: stopped" + (signal ? " on signal " + std::to_string(signal) : ""));
  return 0;
}

const Register reg(
    "serve", "Serve interactive segmentation sessions over HTTP, with a browser viewer",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      app.add_option("--checkpoint", o->checkpoint, "M-SAM weights (.safetensors or .pth)")
          ->required();
      app.add_option("--host", o->server.host,
                     "address to listen on (default 127.0.0.1; another needs --token)");
      app.add_option("--port", o->server.port, "port (0: any free port, printed at start)")
          ->check(CLI::Range(0, 65535));
      app.add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
      app.add_option("--precision", o->precision, "fp32, or bf16 / fp16 autocast on CUDA")
          ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
      app.add_option("--data-root", o->server.data_root,
                     "sessions may open scans (files or DICOM folders) under this folder by path");
      app.add_option("--token", o->server.token, "API requests need 'Authorization: Bearer T'");
      app.add_option("--max-sessions", o->max_sessions, "open sessions at most")
          ->check(CLI::Range(1, 1024));
      app.add_option("--session-ttl", o->ttl_s, "close a session idle for this many seconds")
          ->check(CLI::Range(1, 7 * 24 * 3600));
      app.add_option("--max-upload-mb", o->max_upload_mb, "largest scan upload (MiB)")
          ->check(CLI::Range(1, 64 * 1024));
      app.add_option("--web-root", o->server.web_root, "the viewer's files")
          ->default_str(MSAM_WEB_DIR);
      o->server.web_root = MSAM_WEB_DIR;
      add_session_options(app, o->session);
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace msam::cli
#endif  // MSAM_HAVE_ITK
