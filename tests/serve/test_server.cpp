// `msam serve`'s HTTP API on a loopback port, in this process: a session's masks equal the same
// clicks run through interaction::Session directly, every documented error status is answered
// (and the server keeps serving), concurrent clients, memory after the sessions are gone.
// ITK (through the test's multi-channel writer) before httplib, whose macros its Eigen does
// not survive.
#include "../imageio/multi_channel.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/imageio/image_io.h"
#include "msam/interaction/session.h"
#include "msam/serve/scan_files.h"
#include "msam/serve/server.h"

using namespace msam;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kScan = "abdomen_ct_organs/image.nii.gz";  // 122×101×30, 3 mm, CT

// A server on a free loopback port, serving from a thread until destroyed.
class RunningServer {
 public:
  RunningServer(model::MSAM model, serve::ServerOptions options)
      : server_(std::move(model), [&] {
          options.port = 0;
          return options;
        }()) {
    port_ = server_.bind();
    thread_ = std::thread([this] { server_.run(); });
  }
  ~RunningServer() {
    server_.stop();
    thread_.join();
  }
  httplib::Client client(const std::string& token = "") const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    if (!token.empty()) c.set_bearer_token_auth(token.c_str());
    return c;
  }
  serve::Server& server() { return server_; }

 private:
  serve::Server server_;
  int port_ = 0;
  std::thread thread_;
};

serve::ServerOptions options_for_tests() {
  serve::ServerOptions o;
  o.data_root = test::data_path("");
  o.max_sessions = 4;
  return o;
}

model::MSAM checkpoint_model() {
  auto m = model::load_for_inference(test::checkpoint_path("msam_format.pth"));
  m->eval();
  return m;
}

json body_of(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no answer";
  return r ? json::parse(r->body) : json();
}

std::string open_session(httplib::Client& c, const std::string& path = kScan) {
  auto r = c.Post("/api/sessions", json{{"path", path}}.dump(), "application/json");
  EXPECT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  return json::parse(r->body).at("id");
}

httplib::Result click(httplib::Client& c, const std::string& id, const json& point,
                      const std::string& label = "fg") {
  return c.Post("/api/sessions/" + id + "/clicks",
                json{{"point", point}, {"label", label}, {"space", "voxel"}}.dump(),
                "application/json");
}

// The mask the API returns, read back as a tensor.
torch::Tensor mask_of(httplib::Client& c, const std::string& id) {
  auto r = c.Get("/api/sessions/" + id + "/mask");
  EXPECT_TRUE(r && r->status == 200);
  return serve::read_scan_bytes(r->body, "mask.nii.gz").data.to(torch::kUInt8);
}

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

const std::vector<json> kClicks{{60, 50, 15}, {70, 45, 16}, {40, 60, 12}};
const std::vector<std::string> kLabels{"fg", "fg", "bg"};

}  // namespace

TEST(Serve, ClicksUndoResetMatchTheSessionLibrary) {
  RunningServer running(checkpoint_model(), options_for_tests());
  auto c = running.client();
  const auto id = open_session(c);
  auto info = body_of(c.Get("/api/sessions/" + id));
  EXPECT_EQ(info.at("size"), json::array({122, 101, 30}));

  interaction::Session direct(checkpoint_model(), imageio::read_image(test::data_path(kScan)), {});
  std::vector<torch::Tensor> masks;
  for (size_t k = 0; k < kClicks.size(); ++k) {
    auto r = click(c, id, kClicks[k], kLabels[k]);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const auto answer = json::parse(r->body);
    const auto p = kClicks[k].get<std::vector<double>>();
    const auto expected = direct.add_click(
        {{p[0], p[1], p[2]}, kLabels[k] == "fg" ? interaction::kForeground : interaction::kBackground,
         interaction::Space::kVoxel});
    EXPECT_EQ(answer.at("clicks"), k + 1);
    EXPECT_EQ(answer.at("voxels"), expected.voxels);
    EXPECT_GT(answer.at("ms").get<double>(), 0.0);
    masks.push_back(direct.mask().data.to(torch::kUInt8));
    EXPECT_TRUE(torch::equal(mask_of(c, id), masks.back())) << "after click " << k + 1;
  }
  EXPECT_GT(masks.back().sum().item<int64_t>(), 0);

  auto undone = body_of(c.Post("/api/sessions/" + id + "/undo"));
  EXPECT_EQ(undone.at("clicks"), 2);
  EXPECT_TRUE(torch::equal(mask_of(c, id), masks[1]));
  auto reset = body_of(c.Post("/api/sessions/" + id + "/reset"));
  EXPECT_EQ(reset.at("clicks"), 0);
  EXPECT_EQ(reset.at("voxels"), 0);
  EXPECT_TRUE(reset.at("bbox").is_null());

  // The scan the viewer loads has the scan's grid; NRRD masks too.
  auto scan = c.Get("/api/sessions/" + id + "/scan");
  ASSERT_TRUE(scan && scan->status == 200);
  EXPECT_EQ(serve::read_scan_bytes(scan->body, "scan.nii.gz").data.sizes(),
            (std::vector<int64_t>{122, 101, 30}));
  auto nrrd = c.Get("/api/sessions/" + id + "/mask?format=nrrd");
  ASSERT_TRUE(nrrd && nrrd->status == 200);
  EXPECT_EQ(nrrd->body.compare(0, 4, "NRRD"), 0);

  EXPECT_EQ(c.Delete("/api/sessions/" + id)->status, 200);
  EXPECT_EQ(c.Get("/api/sessions/" + id)->status, 404);
}

TEST(Serve, UploadedScanEqualsTheSameFileByPath) {
  RunningServer running(test::tiny_model(3), options_for_tests());
  auto c = running.client();
  std::ifstream in(test::data_path("breast_mr/image.nrrd"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  httplib::Headers named{{"X-Filename", "image.nrrd"}};
  auto r = c.Post("/api/sessions", named, bytes, "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const auto uploaded = json::parse(r->body);
  const auto by_path = body_of(c.Get("/api/sessions/" + open_session(c, "breast_mr/image.nrrd")));
  for (const char* key : {"size", "spacing", "origin", "direction"})
    EXPECT_EQ(uploaded.at(key), by_path.at(key)) << key;
}

// A multi-channel scan (MR sequences on a 4th axis) opens one channel, by path or upload;
// without a channel, or with a bad one, the client is told and the server keeps serving.
TEST(Serve, MultiChannelScansOpenTheChannelAsked) {
  const auto dir = test::temp_dir("serve_channels");
  const auto scan = imageio::read_image(test::data_path(kScan));
  test::write_channels(dir + "/sequences.nii", {scan.data, scan.data.neg()}, scan.geometry);
  auto options = options_for_tests();
  options.data_root = dir;
  RunningServer running(test::tiny_model(3), options);
  auto c = running.client();

  auto r = c.Post("/api/sessions", json{{"path", "sequences.nii"}, {"channel", 1}}.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  auto got = c.Get("/api/sessions/" + json::parse(r->body).at("id").get<std::string>() + "/scan");
  ASSERT_TRUE(got && got->status == 200);
  EXPECT_TRUE(torch::equal(serve::read_scan_bytes(got->body, "scan.nii.gz").data, scan.data.neg()));

  std::ifstream in(dir + "/sequences.nii", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  httplib::Headers named{{"X-Filename", "sequences.nii"}};
  r = c.Post("/api/sessions?channel=0", named, bytes, "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(json::parse(r->body).at("size"), json::array({122, 101, 30}));

  r = c.Post("/api/sessions", json{{"path", "sequences.nii"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(r->body.find("2 channels on a 4th axis"), std::string::npos) << r->body;
  r = c.Post("/api/sessions?channel=2", named, bytes, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422);
  EXPECT_NE(r->body.find("sequences.nii: channel 2 does not exist"), std::string::npos) << r->body;
  r = c.Post("/api/sessions", json{{"path", "sequences.nii"}, {"channel", -1}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = c.Post("/api/sessions?channel=flair", named, bytes, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(c.Get("/api/info")).at("sessions"), 2);
}

TEST(Serve, EveryErrorIsAnsweredAndTheServerKeepsServing) {
  auto options = options_for_tests();
  options.max_upload_bytes = 1 << 20;
  RunningServer running(test::tiny_model(3), options);
  auto c = running.client();
  auto status = [](const httplib::Result& r) { return r ? r->status : -1; };
  auto error_of = [](const httplib::Result& r) {
    return r ? json::parse(r->body).value("error", std::string()) : std::string();
  };
  const auto id = open_session(c);

  // 400: not JSON, no point, bad label, unknown mask format, empty upload.
  EXPECT_EQ(status(c.Post("/api/sessions/" + id + "/clicks", "{", "application/json")), 400);
  EXPECT_EQ(status(c.Post("/api/sessions/" + id + "/clicks", R"({"label": "fg"})",
                          "application/json")), 400);
  EXPECT_EQ(status(click(c, id, {1, 2, 3}, "maybe")), 400);
  EXPECT_EQ(status(c.Get("/api/sessions/" + id + "/mask?format=png")), 400);
  EXPECT_EQ(status(c.Post("/api/sessions", "", "application/octet-stream")), 400);
  // 403: out of the data root by `..`, by an absolute path, by a symbolic link.
  EXPECT_EQ(status(c.Post("/api/sessions", R"({"path": "../fixtures/parity/README.md"})",
                          "application/json")), 403);
  EXPECT_EQ(status(c.Post("/api/sessions", R"({"path": "/etc/passwd"})", "application/json")),
            403);
  // 404: unknown session, unknown file, unknown endpoint.
  EXPECT_EQ(status(click(c, "0123abcd", {1, 2, 3})), 404);
  EXPECT_EQ(status(c.Post("/api/sessions", R"({"path": "no/such.nii.gz"})", "application/json")),
            404);
  EXPECT_EQ(status(c.Get("/api/nothing")), 404);
  // 413: an upload over --max-upload-mb, refused before it is read whole.
  const auto upload = c.Post("/api/sessions", std::string(2 << 20, 'x'), "application/octet-stream");
  EXPECT_EQ(status(upload), 413);
  // 422: a click outside the scan, a scan that does not read.
  const auto outside = click(c, id, {500, 2, 3});
  EXPECT_EQ(status(outside), 422);
  EXPECT_NE(error_of(outside).find("outside the volume"), std::string::npos) << error_of(outside);
  EXPECT_EQ(status(c.Post("/api/sessions", std::string(1000, 'x'), "application/octet-stream")),
            422);
  // 503: the session limit (4 here, one open).
  for (int i = 0; i < 3; ++i) open_session(c);
  const auto full = c.Post("/api/sessions", json{{"path", kScan}}.dump(), "application/json");
  EXPECT_EQ(status(full), 503);
  EXPECT_FALSE(error_of(full).empty());

  EXPECT_EQ(status(c.Get("/api/health")), 200);
  EXPECT_EQ(status(click(c, id, {60, 50, 15})), 200);
}

TEST(Serve, TokenGuardsTheApiButNotHealth) {
  auto options = options_for_tests();
  options.token = "s3cret";
  RunningServer running(test::tiny_model(3), options);
  auto anonymous = running.client();
  EXPECT_EQ(anonymous.Get("/api/info")->status, 401);
  EXPECT_EQ(anonymous.Get("/api/health")->status, 200);
  EXPECT_EQ(running.client("wrong").Get("/api/info")->status, 401);
  auto c = running.client("s3cret");
  EXPECT_EQ(c.Get("/api/info")->status, 200);
  EXPECT_FALSE(open_session(c).empty());
}

TEST(Serve, ExposureBeyondLoopbackNeedsAToken) {
  serve::ServerOptions o;
  o.host = "0.0.0.0";
  EXPECT_THROW(serve::check_exposure(o), msam::Error);
  o.token = "t";
  EXPECT_NO_THROW(serve::check_exposure(o));
  o = {};
  EXPECT_NO_THROW(serve::check_exposure(o));
}

TEST(Serve, PathsStayInsideTheDataRoot) {
  const auto root = test::temp_dir("serve_root");
  const auto outside = test::temp_dir("serve_outside");
  std::ofstream(fs::path(outside) / "secret.nii") << "x";
  std::ofstream(fs::path(root) / "scan.nii") << "x";
  fs::create_directory_symlink(outside, fs::path(root) / "escape");
  EXPECT_EQ(serve::resolve_under_root(root, "scan.nii"),
            fs::canonical(fs::path(root) / "scan.nii").string());
  EXPECT_THROW(serve::resolve_under_root(root, "escape/secret.nii"), serve::PathOutsideRoot);
  EXPECT_THROW(serve::resolve_under_root(root, "../serve_outside/secret.nii"),
               serve::PathOutsideRoot);
  EXPECT_THROW(serve::resolve_under_root(root, (fs::path(outside) / "secret.nii").string()),
               serve::PathOutsideRoot);
  EXPECT_THROW(serve::resolve_under_root(root, "missing.nii"), serve::PathNotFound);
}

// 16 clients, 5 clicks each, 4 per session: every request answered, each session's mask equal
// to its clicks (in the order the server applied them) run one after another, and the memory
// back near where it started once the sessions are deleted.
TEST(Serve, ConcurrentClientsGetConsistentMasks) {
  RunningServer running(test::tiny_model(3), options_for_tests());
  auto c = running.client();
  // Warm up allocations and the model before measuring memory.
  const auto warm = open_session(c);
  ASSERT_EQ(click(c, warm, {60, 50, 15})->status, 200);
  c.Delete("/api/sessions/" + warm);
  const int64_t before = resident_bytes();

  std::vector<std::string> ids;
  for (int s = 0; s < 4; ++s) ids.push_back(open_session(c));
  std::atomic<int> answered{0}, failed{0};
  std::vector<std::thread> clients;
  for (int k = 0; k < 16; ++k)
    clients.emplace_back([&, k] {
      auto client = running.client();
      const auto& id = ids[k % 4];
      for (int i = 0; i < 5; ++i) {
        const json point{40 + 3 * (k / 4) + i, 40 + 2 * i, 10 + (k % 3)};
        auto r = click(client, id, point, i == 4 ? "bg" : "fg");
        (r && r->status == 200 ? answered : failed)++;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered, 80);
  EXPECT_EQ(failed, 0);

  for (const auto& id : ids) {
    const auto info = body_of(c.Get("/api/sessions/" + id));
    ASSERT_EQ(info.at("clicks").size(), 20u);
    interaction::Session replay(test::tiny_model(3),
                                imageio::read_image(test::data_path(kScan)), {});
    for (const auto& k : info.at("clicks")) {
      const auto p = k.at("point").get<std::vector<double>>();
      replay.add_click({{p[0], p[1], p[2]},
                        k.at("label") == "fg" ? interaction::kForeground : interaction::kBackground,
                        interaction::Space::kVoxel});
    }
    EXPECT_TRUE(torch::equal(mask_of(c, id), replay.mask().data.to(torch::kUInt8))) << id;
  }
  for (const auto& id : ids) EXPECT_EQ(c.Delete("/api/sessions/" + id)->status, 200);
  EXPECT_EQ(running.server().sessions().size(), 0u);
  const int64_t after = resident_bytes();
  EXPECT_LT(after - before, 64ll << 20) << "resident " << (before >> 20) << " MiB before, "
                                        << (after >> 20) << " MiB after";
}
