#include "fixtures.h"

#include "msam/common/compat.h"
#include "msam/common/device.h"

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <unistd.h>

namespace msam::test {

std::string shared_dir() {
  if (const char* env = std::getenv("MSAM_SHARED_DIR")) return env;
  return MSAM_SHARED_DIR;
}

std::string parity_path(const std::string& file) {
  return shared_dir() + "/fixtures/parity/" + file;
}
std::string data_path(const std::string& rel) { return shared_dir() + "/data/" + rel; }
std::string checkpoint_path(const std::string& file) {
  return shared_dir() + "/fixtures/checkpoints/" + file;
}

const io::TensorFile& parity_fixture(const std::string& file) {
  static std::mutex mu;
  static std::map<std::string, io::TensorFile> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(file);
  if (it == cache.end()) it = cache.emplace(file, io::read_safetensors(parity_path(file))).first;
  return it->second;
}

torch::Device device() {
  static const torch::Device d = [] {
    const char* env = std::getenv("MSAM_TEST_DEVICE");
    const std::string name = env ? env : "cpu";
    if (name == "cpu") return torch::Device(torch::kCPU);
    if (name != "cuda") throw std::runtime_error("MSAM_TEST_DEVICE must be cpu or cuda");
    if (!torch::cuda::is_available())
      throw std::runtime_error("MSAM_TEST_DEVICE=cuda but no CUDA device is available");
    msam::device::set_tf32(false);
    return torch::Device(torch::kCUDA);
  }();
  return d;
}

bool bf16_autocast() {
  static const bool on = [] {
    const char* env = std::getenv("MSAM_TEST_PRECISION");
    const std::string p = env ? env : "fp32";
    if (p == "fp32") return false;
    if (p != "bf16") throw std::runtime_error("MSAM_TEST_PRECISION must be fp32 or bf16");
    if (!device().is_cuda()) throw std::runtime_error("MSAM_TEST_PRECISION=bf16 needs MSAM_TEST_DEVICE=cuda");
    return true;
  }();
  return on;
}

torch::Tensor on_device(const torch::Tensor& t, torch::Dtype dtype) {
  return t.to(device(), dtype);
}
torch::Tensor on_device(const torch::Tensor& t) { return t.to(device()); }

namespace {

// Autocast state is per thread: set once on the thread that runs the tests.
class Bf16AutocastEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (bf16_autocast()) guard_ = std::make_unique<compat::AutocastGuard>(device(), torch::kBFloat16);
  }
  void TearDown() override { guard_.reset(); }

 private:
  std::unique_ptr<compat::AutocastGuard> guard_;
};
[[maybe_unused]] const auto* const kBf16Environment = ::testing::AddGlobalTestEnvironment(new Bf16AutocastEnvironment);

struct TempRoot {
  std::filesystem::path root;
  TempRoot() {
    root = std::filesystem::temp_directory_path() /
           ("msam_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(root);
  }
  ~TempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};
}  // namespace

std::map<std::string, at::Tensor> module_fixture_weights() {
  std::map<std::string, at::Tensor> w;
  for (const char* f : {"image_encoder_small.safetensors", "prompt_encoder.safetensors",
                        "mea.safetensors", "mask_decoder.safetensors"})
    for (const auto& [k, v] : parity_fixture(f).tensors)
      if (k.rfind("input.", 0) != 0 && k.rfind("output.", 0) != 0) w[k] = v;
  return w;
}

model::MSAM tiny_model(uint64_t seed) {
  torch::manual_seed(seed);
  model::MSAM m(model::tiny_cpu_config());
  m->eval();
  return m;
}

std::string temp_dir(const std::string& tag) {
  static TempRoot root;
  static int counter = 0;
  auto p = root.root / (tag + "_" + std::to_string(counter++));
  std::filesystem::create_directories(p);
  return p.string();
}

::testing::AssertionResult all_close(const torch::Tensor& actual, const torch::Tensor& ref,
                                     double atol, double rtol) {
  if (!actual.sizes().equals(ref.sizes()))
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " != reference shape " << ref.sizes();
  auto a = actual.detach().to(torch::kCPU, torch::kDouble);
  auto r = ref.detach().to(torch::kCPU, torch::kDouble);
  if (!torch::isfinite(a).all().item<bool>())
    return ::testing::AssertionFailure() << "output has non-finite values";
  // Under bf16 autocast even float64 tests pass through float32 stages (the point encoding).
  if (bf16_autocast()) {
    const double rel = ((a - r).norm() / r.norm().clamp_min(1e-30)).item<double>();
    if (rel <= kBf16RelNorm) return ::testing::AssertionSuccess() << "relative norm " << rel;
    return ::testing::AssertionFailure() << "bf16 autocast: ‖out − ref‖/‖ref‖ = " << rel
                                         << " > " << kBf16RelNorm;
  }
  auto diff = (a - r).abs();
  auto excess = diff - (atol + rtol * r.abs());
  auto worst = excess.flatten().argmax().item<int64_t>();
  double max_excess = excess.flatten()[worst].item<double>();
  if (max_excess <= 0)
    return ::testing::AssertionSuccess() << "max |Δ| " << diff.max().item<double>();
  return ::testing::AssertionFailure()
         << "max |Δ| = " << diff.max().item<double>() << " (max |ref| "
         << r.abs().max().item<double>() << "); worst at flat index " << worst << ": got "
         << a.flatten()[worst].item<double>() << ", ref " << r.flatten()[worst].item<double>()
         << ", allowed " << atol << " + " << rtol << "·|ref|";
}

}  // namespace msam::test
