#include "msam/train/loss.h"

#include <sstream>
#include <vector>

#include "msam/common/error.h"

namespace msam::train {
namespace {

constexpr double kSmooth = 1e-5;

void check_pair(const at::Tensor& logits, const at::Tensor& target, const char* loss) {
  if (logits.dim() < 3 || !target.sizes().equals(logits.sizes())) {
    std::ostringstream msg;
    msg << loss << ": expected logits B×C×spatial and a target of the same shape, got logits "
        << logits.sizes() << " and target " << target.sizes();
    throw Error(msg.str());
  }
}

}  // namespace

at::Tensor soft_dice_loss_per_item(const at::Tensor& logits, const at::Tensor& target) {
  check_pair(logits, target, "soft Dice loss");
  const auto p = at::sigmoid(logits);
  const auto t = target.to(p.scalar_type());
  std::vector<int64_t> spatial;
  for (int64_t d = 2; d < logits.dim(); ++d) spatial.push_back(d);
  const auto intersection = (t * p).sum(spatial);
  const auto denominator = (t * t).sum(spatial) + (p * p).sum(spatial);
  return 1.0 - (2.0 * intersection + kSmooth) / (denominator + kSmooth);
}

at::Tensor dice_ce_loss_monai12(const at::Tensor& logits, const at::Tensor& target) {
  const auto dice = soft_dice_loss_per_item(logits, target).mean();
  // Same channel count: MONAI 1.2 hands the float target to nn.CrossEntropyLoss, which reads
  // it as class probabilities over the channel dim.
  return dice + at::cross_entropy_loss(logits, target.to(logits.scalar_type()));
}

at::Tensor bce_with_logits_loss(const at::Tensor& logits, const at::Tensor& target) {
  check_pair(logits, target, "BCE loss");
  return at::binary_cross_entropy_with_logits(logits, target.to(logits.scalar_type()));
}

at::Tensor dice_bce_loss(const at::Tensor& logits, const at::Tensor& target) {
  return soft_dice_loss_per_item(logits, target).mean() + bce_with_logits_loss(logits, target);
}

}  // namespace msam::train
