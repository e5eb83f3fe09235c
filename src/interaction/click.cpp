#include "msam/interaction/click.h"

#include <torch/torch.h>

#include "msam/common/names.h"

namespace msam::interaction {

Clicks to_batch(const std::vector<Click>& clicks, const torch::Device& device) {
  std::vector<int64_t> points, labels;
  for (const auto& c : clicks) {
    points.insert(points.end(), c.voxel.begin(), c.voxel.end());
    labels.push_back(c.label);
  }
  const auto n = static_cast<int64_t>(clicks.size());
  return {torch::tensor(points, torch::kLong).view({1, n, 3}).to(device),
          torch::tensor(labels, torch::kLong).view({1, n}).to(device)};
}

std::vector<Click> from_batch(const Clicks& clicks, int64_t b) {
  const auto p = clicks.points[b].to(torch::kCPU).contiguous();
  const auto l = clicks.labels[b].to(torch::kCPU).contiguous();
  std::vector<Click> out(static_cast<size_t>(l.size(0)));
  for (int64_t i = 0; i < l.size(0); ++i)
    out[i] = Click{{p[i][0].item<int64_t>(), p[i][1].item<int64_t>(), p[i][2].item<int64_t>()},
                   static_cast<int>(l[i].item<int64_t>())};
  return out;
}

const char* name(ClickProtocol protocol) { return name_in(kClickProtocolNames, protocol); }

ClickProtocol parse_click_protocol(const std::string& text, const std::string& source) {
  return parse_name(kClickProtocolNames, text, "click protocol", source);
}

}  // namespace msam::interaction
