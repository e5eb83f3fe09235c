// Data-parallel gradient reduction, as PyTorch's DistributedDataParallel does it but called
// explicitly after backward (the C++ frontend has no DDP module): the trainable parameters'
// gradients are flattened into buckets of about `bucket_bytes`, each bucket all-reduced once.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "msam/dist/process_group.h"

namespace msam::dist {

class GradientReducer {
 public:
  // `params`: the parameters the optimiser steps, in registration order (bucketed in reverse,
  // the order backward produces them).
  GradientReducer(std::shared_ptr<ProcessGroup> group, std::vector<at::Tensor> params,
                  int64_t bucket_bytes = 25 << 20);

  // Every gradient becomes Σ_ranks weight_r · grad_r. With weight = (this rank's samples) /
  // (global batch) that is the gradient of the global batch's mean loss, also when ranks hold
  // different numbers of samples (a last, short batch; a rank with none passes no gradients
  // and weight 0). A gradient undefined on every rank stays undefined, so that AdamW skips that
  // parameter as it does in one process; undefined on some ranks counts as zeros there.
  void reduce(double weight);

  struct Stats {
    int64_t calls = 0;
    int64_t bytes = 0;     // gradient bytes all-reduced per call (the buckets' total)
    double seconds = 0;    // wall time inside reduce(), all calls
  };
  const Stats& stats() const { return stats_; }
  size_t num_buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;
    at::TensorOptions options;
  };
  std::shared_ptr<ProcessGroup> group_;
  std::vector<at::Tensor> params_;
  std::vector<Bucket> buckets_;
  Stats stats_;
};

}  // namespace msam::dist
