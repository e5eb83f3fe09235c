// Test support: where the shared fixtures live, cached loading, tolerance checks.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "msam/io/safetensors.h"
#include "msam/model/msam.h"
#include "msam/model/presets.h"

namespace msam::test {

// ../shared beside the checkout (overridable with MSAM_SHARED_DIR in the environment).
std::string shared_dir();
std::string parity_path(const std::string& file);  // fixtures/parity/<file>
std::string data_path(const std::string& rel);     // data/<rel>
std::string checkpoint_path(const std::string& file);  // fixtures/checkpoints/<file>

// Parsed once per process; tests share the result.
const io::TensorFile& parity_fixture(const std::string& file);

// The weights of fixtures a–d (image encoder, prompt encoder, adapter, mask decoder) under the
// model's parameter names, without their inputs and outputs.
std::map<std::string, at::Tensor> module_fixture_weights();

// The demo's small model (tiny_cpu_config) with random weights from torch seed `seed`, in eval
// mode: what tests that need a real model but not trained weights use.
model::MSAM tiny_model(uint64_t seed);

// A fresh, empty temporary folder removed at process exit.
std::string temp_dir(const std::string& tag);

// Where the model tests run: the CPU, or the GPU with MSAM_TEST_DEVICE=cuda (tools/gpu_check.sh).
// There TF32 is off, so float32 means float32.
torch::Device device();
// MSAM_TEST_PRECISION=bf16 (CUDA only): float32 tests run under bf16 autocast for the whole
// process, and every check becomes a relative-norm check (kBf16RelNorm).
bool bf16_autocast();
constexpr double kBf16RelNorm = 3e-2;
// `t` on the test device, as `dtype`.
torch::Tensor on_device(const torch::Tensor& t, torch::Dtype dtype);
torch::Tensor on_device(const torch::Tensor& t);

// Elementwise |a - ref| <= atol + rtol·|ref| (in float64); under bf16 autocast
// ‖a − ref‖ / ‖ref‖ <= kBf16RelNorm instead. On failure reports the worst
// element, its index and the largest |Δ|.
::testing::AssertionResult all_close(const torch::Tensor& actual, const torch::Tensor& ref,
                                     double atol, double rtol);

// Tolerances of docs/design.md §9 (the fixtures' float32-vs-float64 differences).
struct Tol {
  double atol, rtol;
};
constexpr Tol kModuleF32{1e-4, 1e-4};      // single modules in float32
constexpr Tol kClickLoopF32{5e-4, 5e-4};   // fed-back mask logits amplify differences
constexpr Tol kF64{1e-6, 1e-6};            // float64: F32 storage rounding of the references
constexpr Tol kF64PointPE{1e-5, 1e-6};     // outputs through the float32 point PE

#define MSAM_EXPECT_CLOSE(actual, ref, tol) \
  EXPECT_TRUE(::msam::test::all_close((actual), (ref), (tol).atol, (tol).rtol))

}  // namespace msam::test
