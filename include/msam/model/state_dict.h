// Loading and saving module weights by reference state_dict key.
#pragma once
#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

namespace msam::model {

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> missing;     // module parameters/buffers not found in the source
  std::vector<std::string> unexpected;  // source keys under `prefix` the module does not have
};

// Copies `source[prefix + name]` into every parameter and buffer `name` of `module`,
// converting dtype and device. A shape mismatch is always an msam::Error naming the key.
// With `strict`, missing or unexpected keys under `prefix` are errors too; `ignore` lists
// source keys (relative to prefix) that are known to be unused (e.g. `add_norm4.*`).
LoadReport load_state_dict(torch::nn::Module& module,
                           const std::map<std::string, at::Tensor>& source,
                           const std::string& prefix, bool strict,
                           const std::vector<std::string>& ignore = {},
                           const std::string& source_name = "weights");

// The module's parameters and buffers as `prefix + name` → tensor (detached, CPU).
std::map<std::string, at::Tensor> state_dict(const torch::nn::Module& module,
                                             const std::string& prefix = "");

}  // namespace msam::model
