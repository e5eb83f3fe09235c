#include "msam/model/state_dict.h"

#include <torch/torch.h>

#include <set>

#include "msam/common/error.h"
#include "msam/common/shape.h"

namespace msam::model {
namespace {

bool ignored(const std::string& key, const std::vector<std::string>& ignore) {
  for (const auto& p : ignore) {
    if (!p.empty() && p.back() == '*') {
      if (key.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0) return true;
    } else if (key == p) {
      return true;
    }
  }
  return false;
}


}  // namespace

LoadReport load_state_dict(torch::nn::Module& module,
                           const std::map<std::string, at::Tensor>& source,
                           const std::string& prefix, bool strict,
                           const std::vector<std::string>& ignore,
                           const std::string& source_name) {
  LoadReport report;
  std::set<std::string> own;
  torch::NoGradGuard no_grad;
  auto copy_into = [&](const std::string& name, at::Tensor& dst) {
    own.insert(name);
    auto it = source.find(prefix + name);
    if (it == source.end()) {
      report.missing.push_back(prefix + name);
      return;
    }
    if (!it->second.sizes().equals(dst.sizes()))
      throw Error(source_name + ": '" + prefix + name + "' has shape " +
                  shape_str(it->second.sizes()) + " but the model expects " +
                  shape_str(dst.sizes()));
    dst.copy_(it->second.to(dst.device(), dst.scalar_type()));
    report.loaded.push_back(prefix + name);
  };
  for (auto& p : module.named_parameters(true)) copy_into(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) copy_into(b.key(), b.value());
  for (const auto& [key, _] : source) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rel = key.substr(prefix.size());
    if (!own.count(rel) && !ignored(rel, ignore)) report.unexpected.push_back(key);
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = source_name + ": weights do not match the model";
    auto list = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      msg += std::string("; ") + what + " (" + std::to_string(keys.size()) + "): ";
      for (size_t i = 0; i < keys.size() && i < 5; ++i) msg += (i ? ", " : "") + keys[i];
      if (keys.size() > 5) msg += ", ...";
    };
    list("missing", report.missing);
    list("unexpected", report.unexpected);
    throw Error(msg);
  }
  return report;
}

std::map<std::string, at::Tensor> state_dict(const torch::nn::Module& module,
                                             const std::string& prefix) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : module.named_parameters(true))
    out[prefix + p.key()] = p.value().detach().to(at::kCPU);
  for (const auto& b : module.named_buffers(true))
    out[prefix + b.key()] = b.value().detach().to(at::kCPU);
  return out;
}

}  // namespace msam::model
