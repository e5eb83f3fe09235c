#include "msam/dist/gradient_reducer.h"

#include <chrono>

#include "msam/common/error.h"

namespace msam::dist {

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> group,
                                 std::vector<at::Tensor> params, int64_t bucket_bytes)
    : group_(std::move(group)), params_(std::move(params)) {
  if (!group_) throw Error("GradientReducer: no process group");
  // Reverse order: backward produces the last layers' gradients first (DDP's order; it also
  // keeps each bucket's parameters neighbours in the network).
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const auto opts = p.options().requires_grad(false);
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && buckets_.back().options.dtype() == opts.dtype() &&
                      buckets_.back().options.device() == opts.device() &&
                      (buckets_.back().numel * static_cast<int64_t>(p.element_size()) + bytes <=
                       bucket_bytes);
    if (!fits) buckets_.push_back(Bucket{{}, 0, opts});
    buckets_.back().params.push_back(k);
    buckets_.back().numel += p.numel();
    stats_.bytes += bytes;
  }
}

void GradientReducer::reduce(double weight) {
  const auto t0 = std::chrono::steady_clock::now();
  // Which gradients exist on any rank: one small all-reduce.
  auto defined = at::zeros({static_cast<int64_t>(params_.size())}, at::kFloat);
  for (size_t k = 0; k < params_.size(); ++k)
    if (params_[k].grad().defined()) defined[static_cast<int64_t>(k)] = 1.0f;
  if (group_->cuda()) defined = defined.to(params_.front().device());
  {
    std::vector<at::Tensor> t{defined};
    group_->all_reduce_sum(t, "gradient all-reduce (which gradients exist)");
  }
  const auto any = defined.to(at::kCPU);
  const auto* any_ptr = any.data_ptr<float>();
  for (const auto& b : buckets_) {
    std::vector<at::Tensor> flat;
    flat.reserve(b.params.size());
    for (size_t k : b.params) {
      const auto& g = params_[k].grad();
      flat.push_back(g.defined() ? g.detach().reshape({-1})
                                 : at::zeros({params_[k].numel()}, b.options));
    }
    auto bucket = at::cat(flat).mul_(weight);
    std::vector<at::Tensor> t{bucket};
    group_->all_reduce_sum(t, "gradient all-reduce");
    int64_t offset = 0;
    for (size_t k : b.params) {
      auto& p = params_[k];
      const auto slice = bucket.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
      if (any_ptr[k] == 0) continue;
      if (p.grad().defined())
        p.mutable_grad().copy_(slice);
      else
        p.mutable_grad() = slice.clone();
    }
  }
  ++stats_.calls;
  stats_.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace msam::dist
