#include "msam/data/volume.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "msam/common/error.h"

namespace msam::data {

MemoryOrder memory_order(const at::Tensor& data) {
  MemoryOrder m;
  m.dims.resize(data.dim());
  std::iota(m.dims.begin(), m.dims.end(), 0);
  std::stable_sort(m.dims.begin(), m.dims.end(),
                   [&](int64_t a, int64_t b) { return data.stride(a) > data.stride(b); });
  m.restore.resize(data.dim());
  for (int64_t i = 0; i < data.dim(); ++i) m.restore[m.dims[i]] = i;
  m.data = data.permute(m.dims).contiguous();
  return m;
}

int64_t count_non_finite(const at::Tensor& data) {
  if (!at::isFloatingType(data.scalar_type()) || data.numel() == 0) return 0;
  const auto ordered = memory_order(data).data;
  const auto x = ordered.scalar_type() == at::kDouble ? ordered : ordered.to(at::kFloat);
  const auto [min, max] = at::aminmax(x);
  if (std::isfinite(min.item<double>()) && std::isfinite(max.item<double>())) return 0;
  return at::isfinite(x).logical_not().sum().item<int64_t>();
}

void require_finite(const Volume& volume) {
  const int64_t bad = count_non_finite(volume.data);
  if (bad == 1) throw file_error(volume.source, "1 voxel is NaN or Inf");
  if (bad > 0) throw file_error(volume.source, std::to_string(bad) + " voxels are NaN or Inf");
}

}  // namespace msam::data
