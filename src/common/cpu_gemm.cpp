#include "msam/common/cpu_gemm.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

// OpenBLAS's thread control, present when LibTorch's BLAS is OpenBLAS (Debian); weak, so that
// builds on other BLAS libraries (MKL in pip LibTorch, which is single-threaded inside an
// OpenMP region anyway) link without it.
extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads() __attribute__((weak));
}

namespace msam::cpu {
namespace {

// OpenBLAS single-threaded for the guard's lifetime: each intra-op thread runs its own block.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    if (openblas_get_num_threads && openblas_set_num_threads) {
      saved_ = openblas_get_num_threads();
      if (saved_ != 1) openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    if (saved_ > 1) openblas_set_num_threads(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_ = 0;
};

bool records_grad(std::initializer_list<const at::Tensor*> ts) {
  if (!c10::GradMode::is_enabled()) return false;
  for (const auto* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// Blocks below this many rows gain nothing from a split.
constexpr int64_t kMinRowsPerThread = 64;

}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t threads = at::get_num_threads();
  const int64_t K = x.size(-1), N = weight.size(0);
  const int64_t M = K > 0 ? x.numel() / K : 0;
  if (!x.is_cpu() || threads < 2 || M < 2 * kMinRowsPerThread ||
      !(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) ||
      records_grad({&x, &weight, &bias}))
    return at::linear(x, weight, bias);
  const auto x2 = x.reshape({M, K}).contiguous();
  const auto wt = weight.t();
  auto out = at::empty({M, N}, x.options());
  {
    SingleThreadedBlas single;
    at::parallel_for(0, M, (M + threads - 1) / threads, [&](int64_t begin, int64_t end) {
      auto block = out.narrow(0, begin, end - begin);
      const auto rows = x2.narrow(0, begin, end - begin);
      if (bias.defined())
        at::addmm_out(block, bias, rows, wt);
      else
        at::mm_out(block, rows, wt);
    });
  }
  auto shape = x.sizes().vec();
  shape.back() = N;
  return out.view(shape);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const c10::optional<at::Tensor>& bias, double scale) {
  const int64_t Lq = q.size(-2), Lk = k.size(-2), D = q.size(-1), Dv = v.size(-1);
  auto out_shape = q.sizes().vec();
  out_shape.back() = Dv;
  // Folded to 3-D: 1.13's CPU `matmul` on 4-D operands with a transposed key took a slow path,
  // and `bmm` against a transposed view runs at half the speed of a contiguous kᵀ.
  const bool grad = records_grad({&q, &k, &v});
  const auto q3 = q.reshape({-1, Lq, D});
  const auto k3 = k.reshape({-1, Lk, D}).transpose(1, 2).contiguous();
  const auto v3 = v.reshape({-1, Lk, Dv});
  at::Tensor bias3;
  if (bias.has_value()) {
    auto full = q.sizes().vec();
    full.back() = Lk;
    bias3 = bias->expand(full).reshape({-1, Lq, Lk});
  }
  const bool bias_grad = bias3.defined() && records_grad({&bias3});
  auto run = [&](int64_t begin, int64_t end) {
    const int64_t n = end - begin;
    const auto qb = q3.narrow(0, begin, n), kb = k3.narrow(0, begin, n);
    auto logits = bias3.defined() ? at::baddbmm(bias3.narrow(0, begin, n), qb, kb, 1.0, scale)
                                  : at::bmm(qb, kb).mul_(scale);
    // In place where no graph needs the logits: a fresh (…, Lq, Lk) buffer costs page faults.
    const auto probs = grad || bias_grad ? at::softmax(logits, -1)
                                         : at::_softmax_out(logits, logits, -1, false);
    return at::bmm(probs, v3.narrow(0, begin, n));
  };
  const int64_t batch = q3.size(0), threads = at::get_num_threads();
  if (!q.is_cpu() || threads < 2 || batch < 2 || grad || bias_grad)
    return run(0, batch).view(out_shape);
  auto out = at::empty({batch, Lq, Dv}, q.options());
  {
    SingleThreadedBlas single;
    at::parallel_for(0, batch, (batch + threads - 1) / threads, [&](int64_t begin, int64_t end) {
      out.narrow(0, begin, end - begin).copy_(run(begin, end));
    });
  }
  return out.view(out_shape);
}

}  // namespace msam::cpu
