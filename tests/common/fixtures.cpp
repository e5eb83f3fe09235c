#include "fixtures.h"

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

namespace {
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
