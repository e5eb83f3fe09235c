#include "msam/model/cuda_graphs.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "msam/common/cuda_capture.h"
#include "msam/common/log.h"
#include "msam/model/msam.h"

#if MSAM_CUDA_GRAPHS
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#endif

namespace msam::model {

#if MSAM_CUDA_GRAPHS

namespace {

using Tensors = std::vector<torch::Tensor>;

// One captured graph with its static input and output buffers.
struct Graph {
  at::cuda::CUDAGraph graph;
  Tensors inputs, outputs;
};

// Captures fn(static inputs) after two eager warm-up runs.
std::unique_ptr<Graph> capture(const Tensors& examples, const std::function<Tensors(const Tensors&)>& fn) {
  auto g = std::make_unique<Graph>();
  for (const auto& t : examples) g->inputs.push_back(t.clone());
  cuda::capture(
      g->graph, 2, [&] { fn(g->inputs); }, [&] { g->outputs = fn(g->inputs); });
  return g;
}

std::string signature(const char* what, const Tensors& inputs) {
  std::string s = what;
  for (const auto& t : inputs)
    s += "|" + std::string(c10::toString(t.scalar_type())) + c10::str(t.sizes()) +
         std::to_string(t.device().index());
  if (at::autocast::is_autocast_enabled(at::kCUDA))
    s += "|autocast " + std::string(c10::toString(at::autocast::get_autocast_dtype(at::kCUDA)));
  return s;
}

}  // namespace

struct CudaGraphCache::Impl {
  std::map<std::string, std::unique_ptr<Graph>> graphs;
  bool failed = false;
  // The context whose tensors are in each click graph's static buffers (kept alive, so that
  // identity means same contents).
  std::map<std::string, Tensors> loaded_context;

  // Runs the graph for `inputs` (capturing it on first use); nullopt after a failure.
  std::optional<Tensors> run(const char* what, const Tensors& inputs, size_t fresh_from,
                             const std::function<Tensors(const Tensors&)>& fn) {
    if (failed) return std::nullopt;
    const auto key = signature(what, inputs);
    auto it = graphs.find(key);
    try {
      if (it == graphs.end()) {
        it = graphs.emplace(key, capture(inputs, fn)).first;
        loaded_context[key] = Tensors(inputs.begin(), inputs.begin() + fresh_from);
      }
      auto& g = *it->second;
      // Inputs before `fresh_from` are per-volume: copied only when the volume changes.
      auto& loaded = loaded_context[key];
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (i < fresh_from) {
          if (loaded[i].is_same(inputs[i])) continue;
          loaded[i] = inputs[i];
        }
        g.inputs[i].copy_(inputs[i]);
      }
      g.graph.replay();
      Tensors out;
      for (const auto& t : g.outputs) out.push_back(t.clone());
      return out;
    } catch (const std::exception& e) {
      failed = true;
      graphs.clear();
      loaded_context.clear();
      spdlog::warn("CUDA graph capture failed, running eagerly: {}", e.what());
      return std::nullopt;
    }
  }
};

bool CudaGraphCache::supported() { return true; }
bool CudaGraphCache::usable() const { return !impl_->failed; }

CudaGraphCache::CudaGraphCache() : impl_(std::make_unique<Impl>()) {}
CudaGraphCache::~CudaGraphCache() = default;

std::optional<torch::Tensor> CudaGraphCache::encode(MSAMImpl& model, const torch::Tensor& image) {
  auto out = impl_->run("encoder", {image}, 0, [&](const Tensors& in) -> Tensors {
    return {model.image_encoder(in[0])};
  });
  if (!out) return std::nullopt;
  return (*out)[0];
}

std::optional<MaskPrediction> CudaGraphCache::click(MSAMImpl& model, const VolumeContext& ctx,
                                                    const torch::Tensor& points,
                                                    const torch::Tensor& labels,
                                                    const torch::Tensor& low_res_mask) {
  const Tensors inputs{ctx.adapter_image.image, ctx.adapter_image.updated_image, ctx.dense_pe,
                       points, labels, low_res_mask};
  auto out = impl_->run("click", inputs, 3, [&](const Tensors& in) -> Tensors {
    VolumeContext c;
    c.adapter_image.image = in[0];
    c.adapter_image.updated_image = in[1];
    c.dense_pe = in[2];
    auto pred = model.click_eager(c, in[3], in[4], in[5]);
    return {pred.low_res_masks, pred.iou_pred};
  });
  if (!out) return std::nullopt;
  return MaskPrediction{(*out)[0], (*out)[1]};
}

#else  // a LibTorch without CUDA: nothing to capture

struct CudaGraphCache::Impl {};

bool CudaGraphCache::supported() { return false; }
bool CudaGraphCache::usable() const { return false; }

CudaGraphCache::CudaGraphCache() : impl_(std::make_unique<Impl>()) {}
CudaGraphCache::~CudaGraphCache() = default;

std::optional<torch::Tensor> CudaGraphCache::encode(MSAMImpl&, const torch::Tensor&) {
  return std::nullopt;
}

std::optional<MaskPrediction> CudaGraphCache::click(MSAMImpl&, const VolumeContext&,
                                                    const torch::Tensor&, const torch::Tensor&,
                                                    const torch::Tensor&) {
  return std::nullopt;
}

#endif

}  // namespace msam::model
