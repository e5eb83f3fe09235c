// Parity with fixtures/parity/loss_metrics.safetensors (docs/design.md §4.8 and §8).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "fixtures.h"
#include "msam/eval/metrics.h"
#include "msam/train/loss.h"

using namespace msam;

namespace {

const io::TensorFile& fixture() { return test::parity_fixture("loss_metrics.safetensors"); }
double scalar(const std::string& key) { return fixture().at(key).item<double>(); }

// NaN must stay NaN and ±inf must stay the same infinity; finite values to 1e-9 relative.
void expect_same_value(double actual, double reference, const std::string& what) {
  if (std::isnan(reference)) {
    EXPECT_TRUE(std::isnan(actual)) << what << " = " << actual << ", reference NaN";
  } else if (std::isinf(reference)) {
    EXPECT_EQ(actual, reference) << what;
  } else {
    EXPECT_NEAR(actual, reference, 1e-9 * std::abs(reference) + 1e-12) << what;
  }
}

}  // namespace

TEST(LossParity, DiceCEMonai12AndDiceBCE) {
  const auto target = test::on_device(fixture().at("input.target"));
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const double tol = dtype == torch::kDouble ? 1e-12 : 1e-6;
    const auto logits = test::on_device(fixture().at("input.logits"), dtype);
    const auto per_item = train::soft_dice_loss_per_item(logits, target);
    EXPECT_TRUE(torch::allclose(per_item.to(torch::kCPU, torch::kDouble),
                                fixture().at("output.dice_loss_per_item"), 0, tol))
        << per_item;
    const auto dice = per_item.mean().item<double>();
    EXPECT_NEAR(dice, scalar("output.dice_loss"), tol);
    const auto monai12 = train::dice_ce_loss_monai12(logits, target).item<double>();
    EXPECT_NEAR(monai12, scalar("output.dicece_monai12"), tol);
    // The one-channel CE term of MONAI 1.2 is identically zero.
    EXPECT_EQ(monai12 - dice, scalar("output.ce_term_monai12"));
    EXPECT_NEAR(train::bce_with_logits_loss(logits, target).item<double>(),
                scalar("output.bce_term"), tol);
    EXPECT_NEAR(train::dice_bce_loss(logits, target).item<double>(),
                scalar("output.dicece_monai13plus"), tol);
  }
}

TEST(MetricsParity, MainEmptyPredAndBothEmpty) {
  const auto pred = fixture().at("input.metrics.pred");
  const auto gt = fixture().at("input.metrics.gt");
  const auto sp = fixture().at("input.metrics.spacing");
  eval::MetricOptions opt;
  opt.spacing = {sp[0].item<double>(), sp[1].item<double>(), sp[2].item<double>()};
  const auto empty = torch::zeros_like(pred);
  const std::pair<const char*, eval::CaseMetrics> cases[] = {
      {"main", eval::compute_case_metrics(pred, gt, opt)},
      {"empty_pred", eval::compute_case_metrics(empty, gt, opt)},
      {"both_empty", eval::compute_case_metrics(empty, empty, opt)},
  };
  for (const auto& [name, m] : cases) {
    const std::string p = std::string("output.metrics.") + name + ".";
    expect_same_value(m.dice, scalar(p + "dice"), p + "dice");
    expect_same_value(m.iou, scalar(p + "iou"), p + "iou");
    expect_same_value(m.hd, scalar(p + "hd"), p + "hd");
    expect_same_value(m.hd95, scalar(p + "hd95"), p + "hd95");
    expect_same_value(m.assd, scalar(p + "assd"), p + "assd");
    expect_same_value(m.hd_pred_to_gt, scalar(p + "hd_pred_to_gt"), p + "hd_pred_to_gt");
    expect_same_value(m.hd_gt_to_pred, scalar(p + "hd_gt_to_pred"), p + "hd_gt_to_pred");
    expect_same_value(m.hd95_pred_to_gt, scalar(p + "hd95_pred_to_gt"), p + "hd95_pred_to_gt");
    expect_same_value(m.hd95_gt_to_pred, scalar(p + "hd95_gt_to_pred"), p + "hd95_gt_to_pred");
  }
  // Surface sizes recorded in the fixture's metadata (n_edge_pred 2082, n_edge_gt 2156).
  EXPECT_EQ(cases[0].second.pred_surface_voxels, 2082);
  EXPECT_EQ(cases[0].second.gt_surface_voxels, 2156);
}
