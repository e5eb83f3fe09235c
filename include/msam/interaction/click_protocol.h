// How a simulated annotator places the next click (docs/design.md §3.2), and the threshold that
// decides which voxels a mask holds. In their own header so that the run configuration can
// name them without LibTorch.
#pragma once
#include <string>
#include <utility>

namespace msam::interaction {

enum class ClickProtocol {
  kRandom,    // uniform over the error region (the reference)
  kFnFp5050,  // false negatives or false positives with probability 1/2, then uniform
  kCenter,    // the centre of the thickest error region (interactive-segmentation challenges)
};

// The names run configs and the command line use.
inline constexpr std::pair<ClickProtocol, const char*> kClickProtocolNames[] = {
    {ClickProtocol::kRandom, "random"},
    {ClickProtocol::kFnFp5050, "fnfp5050"},
    {ClickProtocol::kCenter, "center"}};

const char* name(ClickProtocol protocol);
// Any other text throws msam::Error naming `source` and the valid names.
ClickProtocol parse_click_protocol(const std::string& text, const std::string& source);

// A prediction is `logits > threshold`. The reference thresholds the *logits* at 0.5 (not the
// sigmoid at 0.5) both for its Dice and for the error region the next click corrects: this is
// that value. 0 is the probabilistic 0.5.
constexpr double kReferenceClickThreshold = 0.5;

}  // namespace msam::interaction
