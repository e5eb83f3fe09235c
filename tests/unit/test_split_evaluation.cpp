// Split-level evaluation without ITK: a tiny random-weights model on synthetic cache entries
// gives per_case.csv, summary.csv and summary.json that hold exactly what evaluate_case gives
// per case; other tools' masks score through the same report, and the model's own masks
// score as the model did; sessions on the scans' grids score what replaying their clicks shows;
// the metric table says which way each metric is better.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/common/log.h"
#include "msam/data/cache.h"
#include "msam/data/preprocess.h"
#include "msam/eval/metric_table.h"
#include "msam/eval/prediction_scoring.h"
#include "msam/io/csv.h"
#include "msam/eval/split_evaluation.h"
#include "msam/interaction/session.h"

namespace fs = std::filesystem;
using namespace msam;

namespace {

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}

// A scan larger than the 64³ patch on every axis, with its lesion far enough inside that the
// patch lies in the scan (so paste-back and cutting out are exact inverses), stored LPS
// (reoriented on the way in), with a bright ellipsoid lesion centred at x = cx.
std::pair<data::Volume, data::Volume> synthetic_case(int seed, int64_t cx) {
  torch::manual_seed(seed);
  const int64_t X = 80, Y = 78, Z = 76;
  auto image = torch::randn({X, Y, Z}) * 20 + 100;
  const auto x = torch::arange(X).view({-1, 1, 1}), y = torch::arange(Y).view({1, -1, 1}),
             z = torch::arange(Z).view({1, 1, -1});
  const auto lesion = ((x - cx).pow(2) + (y - 39).pow(2) + 2 * (z - 38).pow(2)) < 64;
  image.masked_fill_(lesion, 300);
  data::Geometry g;
  g.spacing = {1.0, 0.9, 1.2};
  g.origin = {-20, 15, 40};
  return {data::Volume{image, g, "scan"}, data::Volume{lesion.to(torch::kUInt8), g, "label"}};
}

// Two prepared cases in a cache, and their labels on the original grid.
struct Split {
  std::vector<std::string> entries;
  std::map<std::string, data::Volume> labels;  // by case id
  eval::OriginalLabelReader original() const {
    return [this](const data::CacheEntryInfo& info) { return labels.at(info.case_id); };
  }
};

Split make_split(const std::string& dir) {
  Split s;
  std::map<std::string, std::pair<data::Volume, data::Volume>> volumes{
      {"synth/case_a", synthetic_case(1, 36)}, {"synth/case_b", synthetic_case(2, 44)}};
  std::vector<data::CaseSource> sources;
  for (const auto& [id, v] : volumes) {
    const auto name = id.substr(id.find('/') + 1);
    touch(fs::path(dir) / "raw" / (name + "_img"));
    touch(fs::path(dir) / "raw" / (name + "_lbl"));
    sources.push_back({id, (fs::path(dir) / "raw" / (name + "_img")).string(),
                       (fs::path(dir) / "raw" / (name + "_lbl")).string(), {}, data::Modality::MR});
    s.labels[id] = v.second;
  }
  data::PreprocessSettings settings;
  settings.patch_size = {64, 64, 64};
  settings.min_label_voxels = 10;
  const data::CaseReader reader = [&](const data::CaseSource& c) { return volumes.at(c.id); };
  const auto report = data::prepare_cache(sources, settings, (fs::path(dir) / "cache").string(), reader);
  for (const auto& c : report.cases) {
    EXPECT_EQ(c.status, data::CaseOutcome::Status::Prepared) << c.message;
    s.entries.push_back(c.entry);
  }
  return s;
}

// Equal, with NaN equal to NaN (empty masks give NaN metrics).
bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void expect_same_metrics(const eval::CaseMetrics& a, const eval::CaseMetrics& b,
                         const std::string& what) {
  for (const auto& m : eval::metric_table())
    EXPECT_TRUE(same(a.*m.value, b.*m.value)) << what << " " << m.name << ": " << a.*m.value
                                              << " vs " << b.*m.value;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

eval::SplitEvalOptions eval_options(const std::string& out) {
  eval::EvalOptions clicks;
  clicks.clicks = 3;
  clicks.seed = 7;
  clicks.threshold = 0;  // this random model's logits at 0.5 would give empty masks
  auto o = eval::split_eval_options({}, clicks, "center");
  o.out_dir = out;
  o.overlays = 1;
  o.model_name = "tiny";
  return o;
}

}  // namespace

TEST(MetricTable, NamesDirectionsAndColumns) {
  std::vector<std::string> names;
  for (const auto& m : eval::metric_table()) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"dice", "iou", "hd", "hd95", "assd", "nsd"}));
  // metric_values and the summaries follow the table.
  eval::CaseMetrics m;
  m.dice = 1, m.iou = 2, m.hd = 3, m.hd95 = 4, m.assd = 5, m.nsd = 6;
  const auto values = eval::metric_values(m);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(values[i].first, names[i]);
    EXPECT_EQ(values[i].second, static_cast<double>(i + 1));
  }
  for (const char* c : {"dice", "iou", "nsd", "orig_dice", "orig_nsd", "dice_click1", "dice_click10"})
    EXPECT_TRUE(eval::higher_is_better(c)) << c;
  for (const char* c : {"hd", "hd95", "assd", "orig_hd", "orig_hd95", "orig_assd"})
    EXPECT_FALSE(eval::higher_is_better(c)) << c;
  for (const char* c : {"case", "seconds", "status", "dice_click", "dice_clickx", "orig_", "orig_seconds"})
    EXPECT_EQ(eval::metric_of_column(c), nullptr) << c;
  EXPECT_STREQ(eval::metric_of_column("orig_hd95")->unit, "mm");
  // Time per case compares too (msam compare --metrics seconds): lower is better.
  EXPECT_FALSE(eval::higher_is_better("seconds"));
  try {
    eval::higher_is_better("status");
    ADD_FAILURE() << "no error for a column that is not a metric";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'status' is not a metric"), std::string::npos) << e.what();
  }
  // Drop is quality lost: positive when "after" is worse, whichever way the metric points.
  EXPECT_GT(eval::quality_drop(*eval::metric_of_column("dice"), 0.8, 0.6), 0);
  EXPECT_GT(eval::quality_drop(*eval::metric_of_column("hd95"), 2.0, 5.0), 0);
}

TEST(SplitEvaluation, OptionsFromTheRun) {
  eval::EvalOptions clicks;
  clicks.clicks = 4;
  clicks.multi_click = true;
  clicks.threshold = 0;
  const auto o = eval::split_eval_options({torch::Device(torch::kCUDA), at::kBFloat16}, clicks,
                                           "fnfp5050");
  EXPECT_TRUE(o.device.is_cuda());
  EXPECT_EQ(o.eval.amp_dtype, at::kBFloat16);
  EXPECT_EQ(o.eval.protocol, interaction::ClickProtocol::kFnFp5050);
  EXPECT_EQ(o.eval.clicks, 4);
  EXPECT_TRUE(o.eval.multi_click);
  EXPECT_EQ(o.eval.threshold, 0);
  EXPECT_THROW(eval::split_eval_options({}, clicks, "nearest"), Error);
}

TEST(SplitEvaluation, ReportHoldsWhatEvaluateCaseGives) {
  const auto dir = test::temp_dir("split_eval");
  const auto split = make_split(dir);
  ASSERT_EQ(split.entries.size(), 2u);
  const auto out = (fs::path(dir) / "eval").string();
  auto model = test::tiny_model(5);
  std::vector<std::pair<std::string, data::Volume>> masks;
  eval::SplitEvalHooks hooks{split.original(),
                             [&](const std::string& p, const data::Volume& v) { masks.emplace_back(p, v); }};
  auto options = eval_options(out);
  options.save_masks = true;
  const auto scores = eval::evaluate_split(model, split.entries, options, hooks);
  ASSERT_EQ(scores.cases.size(), 2u);
  EXPECT_EQ(scores.columns.clicks, 3);
  EXPECT_TRUE(scores.columns.original);

  const auto table = io::read_csv((fs::path(out) / "per_case.csv").string());
  EXPECT_EQ(table.header,
            (std::vector<std::string>{"case", "dice_click1", "dice_click2", "dice_click3", "dice",
                                      "iou", "hd", "hd95", "assd", "nsd", "orig_dice", "orig_iou",
                                      "orig_hd", "orig_hd95", "orig_assd", "orig_nsd", "seconds"}));
  ASSERT_EQ(table.rows.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    // The same case alone, with the same model: the same clicks and scores.
    const auto c = data::read_cache_entry(split.entries[i]);
    const auto alone = eval::evaluate_case(model, c, options.eval, options.device, split.original());
    const auto& s = scores.cases[i];
    EXPECT_EQ(s.case_id, c.info.case_id);
    EXPECT_EQ(s.status, eval::CaseStatus::kScored);
    ASSERT_EQ(s.dice_per_click.size(), 3u);
    for (size_t k = 0; k < 3; ++k) EXPECT_TRUE(same(s.dice_per_click[k], alone.scores.dice_per_click[k]));
    expect_same_metrics(s.crop, alone.scores.crop, c.info.case_id + " crop");
    ASSERT_TRUE(s.original && alone.scores.original);
    expect_same_metrics(*s.original, *alone.scores.original, c.info.case_id + " original");
    // Random weights still make a mask, so these equalities compare numbers, not NaNs.
    EXPECT_GT(s.crop.pred_voxels, 0);
    EXPECT_GT(s.original->pred_voxels, 0);
    // The row says the same, to the six digits the CSV keeps.
    const auto& row = table.rows[i];
    EXPECT_EQ(row[0], s.case_id);
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(row[1 + k], io::format_number(s.dice_per_click[k]));
    const auto& metrics = eval::metric_table();
    for (size_t m = 0; m < metrics.size(); ++m) {
      EXPECT_EQ(row[4 + m], io::format_number(s.crop.*metrics[m].value));
      EXPECT_EQ(row[10 + m], io::format_number((*s.original).*metrics[m].value));
    }
    // The saved mask is the crop mask pasted back, in the scan's geometry.
    EXPECT_EQ(masks[i].first, (fs::path(out) / "masks" / (s.case_id + ".nii.gz")).string());
    EXPECT_TRUE(torch::equal(masks[i].second.data, data::restore_to_original(alone.mask, c.info.record).data));
  }

  // Summaries: each metric per scope over both cases, then Dice per click.
  const auto summary = io::read_csv((fs::path(out) / "summary.csv").string());
  EXPECT_EQ(summary.header, (std::vector<std::string>{"metric", "scope", "mean", "std", "median", "n_cases",
                                                      "n_finite", "n_nan", "n_inf", "n_unscored"}));
  ASSERT_EQ(summary.rows.size(), 6u + 6u + 3u);
  EXPECT_EQ(summary.rows[0][0], "dice");
  EXPECT_EQ(summary.rows[0][1], "crop");
  EXPECT_EQ(summary.rows[0][2], io::format_number(eval::summarize(std::vector<double>{
                                    scores.cases[0].crop.dice, scores.cases[1].crop.dice}).mean));
  EXPECT_EQ(summary.rows[0][5], "2");
  EXPECT_EQ(summary.rows[0][9], "0");
  EXPECT_EQ(summary.rows[6][1], "original");
  EXPECT_EQ(summary.rows[14][0], "dice_click3");
  const auto js = nlohmann::json::parse(read_text(fs::path(out) / "summary.json"));
  EXPECT_EQ(js["cases"]["total"], 2);
  EXPECT_EQ(js["cases"]["scored"], 2);
  EXPECT_EQ(js["settings"]["protocol"], "center");
  EXPECT_EQ(js["settings"]["checkpoint"], "tiny");
  EXPECT_EQ(js["dice_per_click"].size(), 3u);
  EXPECT_TRUE(fs::exists(fs::path(out) / "dice_vs_clicks.svg"));
  EXPECT_EQ(std::distance(fs::directory_iterator(fs::path(out) / "overlays"), fs::directory_iterator{}), 1);
  EXPECT_NE(eval::summary_text(scores).find("2 cases, 3 clicks"), std::string::npos);

  // Without an original label reader (a build without ITK): the crop scope only.
  options.save_masks = false;
  options.out_dir = (fs::path(dir) / "crop_only").string();
  const auto crop_only = eval::evaluate_split(model, split.entries, options, {});
  EXPECT_FALSE(crop_only.columns.original);
  EXPECT_EQ(io::read_csv((fs::path(options.out_dir) / "per_case.csv").string()).header.size(), 11u);
  // Saving masks with no writer is refused up front.
  options.save_masks = true;
  EXPECT_THROW(eval::evaluate_split(model, split.entries, options, {}), Error);
  EXPECT_THROW(eval::evaluate_split(model, {}, eval_options(out), {}), Error);
}

TEST(SessionEvaluation, ReplayedClicksGiveWhatWasScored) {
  // Sessions on the scans' own grids: what the report, clicks/ and masks/ hold is what a
  // session given the written clicks shows (msam segment's path), scored on the scan's grid.
  const auto dir = test::temp_dir("session_eval");
  const auto split = make_split(dir);
  const std::map<std::string, data::Volume> scans{{"synth/case_a", synthetic_case(1, 36).first},
                                                  {"synth/case_b", synthetic_case(2, 44).first}};
  const eval::ScanReader read_scan = [&](const data::CacheEntryInfo& info) {
    return scans.at(info.case_id);
  };
  std::map<std::string, data::Volume> masks;
  eval::SplitEvalHooks hooks{split.original(),
                             [&](const std::string& p, const data::Volume& v) { masks[p] = v; },
                             read_scan};
  const auto out = (fs::path(dir) / "sessions").string();
  auto options = eval_options(out);
  options.sessions = true;
  options.save_masks = true;
  auto model = test::tiny_model(5);
  const auto scores = eval::evaluate_split(model, split.entries, options, hooks);
  EXPECT_FALSE(scores.columns.crop);
  EXPECT_TRUE(scores.columns.original);

  const auto table = io::read_csv((fs::path(out) / "per_case.csv").string());
  EXPECT_EQ(table.header,
            (std::vector<std::string>{"case", "dice_click1", "dice_click2", "dice_click3",
                                      "orig_dice", "orig_iou", "orig_hd", "orig_hd95",
                                      "orig_assd", "orig_nsd", "seconds"}));
  ASSERT_EQ(scores.cases.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto& s = scores.cases[i];
    const auto& scan = scans.at(s.case_id);
    const auto& label = split.labels.at(s.case_id);
    const auto clicks = io::read_csv(
        (fs::path(out) / "clicks" / (eval::case_file_name(s.case_id) + ".csv")).string());
    EXPECT_EQ(clicks.header, (std::vector<std::string>{"click", "x", "y", "z", "label", "dice"}));
    ASSERT_EQ(clicks.rows.size(), 3u);
    // The first click is a foreground click in the lesion.
    EXPECT_EQ(clicks.rows[0][4], "fg");
    EXPECT_EQ(label.data[std::stoi(clicks.rows[0][1])][std::stoi(clicks.rows[0][2])]
                        [std::stoi(clicks.rows[0][3])]
                  .item<int>(),
              1);
    interaction::SessionOptions so;
    so.threshold = options.eval.threshold;
    so.modality = interaction::ScanModality::kMR;
    interaction::Session session(model, scan, so);
    for (size_t k = 0; k < 3; ++k) {
      const auto& row = clicks.rows[k];
      interaction::UserClick c;
      c.point = {std::stod(row[1]), std::stod(row[2]), std::stod(row[3])};
      c.label = row[4] == "fg" ? interaction::kForeground : interaction::kBackground;
      session.add_click(c);
      const double dice = eval::dice_score(session.mask().data, label.data);
      EXPECT_EQ(s.dice_per_click.at(k), dice) << s.case_id << " click " << k + 1;
      EXPECT_EQ(row[5], io::format_number(dice));
      EXPECT_EQ(table.rows[i][1 + k], io::format_number(dice));
    }
    const auto& saved = masks.at((fs::path(out) / "masks" / (s.case_id + ".nii.gz")).string());
    EXPECT_TRUE(torch::equal(saved.data, session.mask().data)) << s.case_id;
    EXPECT_EQ(saved.geometry.origin, scan.geometry.origin);
    EXPECT_GT(saved.data.sum().item<int64_t>(), 0);  // so that the scores compare numbers
    eval::MetricOptions mo;
    mo.spacing = {scan.geometry.spacing[0], scan.geometry.spacing[1], scan.geometry.spacing[2]};
    ASSERT_TRUE(s.original.has_value());
    expect_same_metrics(*s.original, eval::compute_case_metrics(saved.data, label.data, mo),
                        s.case_id);
  }
  // Dice per click is the original grid's in the summaries.
  const auto summary = io::read_csv((fs::path(out) / "summary.csv").string());
  ASSERT_EQ(summary.rows.size(), 6u + 3u);
  EXPECT_EQ(summary.rows[0][1], "original");
  EXPECT_EQ(summary.rows[8][0], "dice_click3");
  EXPECT_EQ(summary.rows[8][1], "original");
  const auto settings = nlohmann::json::parse(read_text(fs::path(out) / "summary.json"))["settings"];
  EXPECT_EQ(settings["sessions"], true);
  EXPECT_EQ(settings["max_windows"], 8);
  EXPECT_TRUE(settings["spacing"].is_null());  // each scan's own
  EXPECT_TRUE(fs::exists(fs::path(out) / "overlays" / "synth_case_a.png"));
  EXPECT_NE(eval::summary_text(scores).find("original"), std::string::npos);
  EXPECT_EQ(eval::summary_text(scores).find("crop"), std::string::npos);

  // Bad input names the case; sessions need the scans.
  const auto expect_error = [](const std::function<void()>& f, const std::string& want) {
    try {
      f();
      ADD_FAILURE() << "no error, expected '" << want << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  const auto& scan = scans.at("synth/case_a");
  auto label = split.labels.at("synth/case_a");
  expect_error([&] {
    eval::evaluate_session_case(model, {"synth/case_a", scan, {label.data.slice(0, 1), label.geometry, "l"}},
                                options.eval, {});
  }, "synth/case_a: label of shape");
  expect_error([&] {
    eval::evaluate_session_case(model, {"synth/case_a", scan, {torch::zeros_like(label.data), label.geometry, "l"}},
                                options.eval, {});
  }, "synth/case_a: the label is empty");
  auto mirrored = options.eval;
  mirrored.mirror = true;
  expect_error([&] { eval::evaluate_session_case(model, {"synth/case_a", scan, label}, mirrored, {}); },
               "do not mirror");
  hooks.read_scan = {};
  expect_error([&] { eval::evaluate_split(model, split.entries, options, hooks); },
               "evaluating sessions needs the scans");
}

TEST(PatchFromOriginal, TakesAMaskWhereTheLabelWent) {
  // The case's own label, taken through its recorded steps, is its cached label: at the
  // native spacing and resampled.
  auto [image, label] = synthetic_case(3, 36);
  data::CaseSource src{"d/c", "img", "lbl", {}, data::Modality::MR};
  data::PreprocessSettings settings;
  settings.patch_size = {48, 40, 84};  // padded along z
  settings.min_label_voxels = 10;
  for (const bool resample : {false, true}) {
    if (resample) settings.target_spacing = data::Point3{0.8, 1.1, 1.5};
    const auto p = data::preprocess_case(image, label, src, settings);
    EXPECT_TRUE(torch::equal(data::patch_from_original(label.data, p.record), p.label))
        << (resample ? "resampled" : "native spacing");
  }
  EXPECT_THROW(data::patch_from_original(torch::zeros({5, 5, 5}, torch::kUInt8),
                                         data::preprocess_case(image, label, src, settings).record),
               Error);
}

TEST(PredictionScoring, FilesForACase) {
  const auto dir = test::temp_dir("prediction_files");
  touch(fs::path(dir) / "case_1.nii.gz");
  touch(fs::path(dir) / "case_2.nrrd");
  touch(fs::path(dir) / "case_2.mha");
  fs::create_directories(fs::path(dir) / "case_3");  // a DICOM series
  touch(fs::path(dir) / "d2" / "case_1.nii");
  EXPECT_EQ(eval::prediction_files(dir, "d/case_1"),
            std::vector<std::string>{(fs::path(dir) / "case_1.nii.gz").string()});
  EXPECT_EQ(eval::prediction_files(dir, "d2/case_1"),  // its dataset's folder first
            std::vector<std::string>{(fs::path(dir) / "d2" / "case_1.nii").string()});
  EXPECT_EQ(eval::prediction_files(dir, "d/case_2").size(), 2u);
  EXPECT_EQ(eval::prediction_files(dir, "d/case_3"),
            std::vector<std::string>{(fs::path(dir) / "case_3").string()});
  EXPECT_TRUE(eval::prediction_files(dir, "d/case_4").empty());
}

TEST(PredictionScoring, ForegroundOfMasksAndLabelMaps) {
  const data::Volume binary{torch::tensor({0.0f, 1.0f, 1.0f}).view({3, 1, 1}), {}, "b.nii"};
  EXPECT_TRUE(torch::equal(eval::prediction_foreground(binary, {2}),
                           torch::tensor({0, 1, 1}, torch::kUInt8).view({3, 1, 1})));
  const data::Volume labels{torch::tensor({0, 1, 2, 4}, torch::kLong).view({4, 1, 1}), {}, "l.nii"};
  EXPECT_TRUE(torch::equal(eval::prediction_foreground(labels, {2, 4}),
                           torch::tensor({0, 0, 1, 1}, torch::kUInt8).view({4, 1, 1})));
  // A label map for a case without target labels is no mask.
  EXPECT_THROW(eval::prediction_foreground(labels, {}), Error);
  const data::Volume soft{torch::tensor({0.0f, 0.4f}).view({2, 1, 1}), {}, "p.nii"};
  EXPECT_THROW(eval::prediction_foreground(soft, {1}), Error);
}

TEST(PredictionScoring, ModelMasksScoreAsTheModelDidAndFailuresAreReported) {
  const auto dir = test::temp_dir("prediction_scoring");
  const auto split = make_split(dir);
  auto model = test::tiny_model(5);
  std::map<std::string, data::Volume> files;  // what the mask reader returns, by path
  auto options = eval_options((fs::path(dir) / "eval").string());
  options.save_masks = true;
  eval::SplitEvalHooks eval_hooks{split.original(),
                                  [&](const std::string& p, const data::Volume& v) { files[p] = v; }};
  const auto model_scores = eval::evaluate_split(model, split.entries, options, eval_hooks);

  eval::PredictionHooks hooks{[&](const std::string& p) { return files.at(p); }, split.original()};
  eval::PredictionOptions po{(fs::path(dir) / "eval" / "masks").string(),
                             (fs::path(dir) / "scored").string(), 1.0, 1};
  for (const auto& [path, v] : files) touch(path);
  const auto scored = eval::score_predictions(split.entries, po, hooks);
  ASSERT_EQ(scored.cases.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto& s = scored.cases[i];
    const auto& m = model_scores.cases[i];
    EXPECT_EQ(s.status, eval::CaseStatus::kScored) << s.message;
    ASSERT_TRUE(s.original && m.original);
    expect_same_metrics(*s.original, *m.original, s.case_id + " original");
    // The scan is larger than the patch, so the mask goes back to the crop unchanged.
    expect_same_metrics(s.crop, m.crop, s.case_id + " crop");
  }
  const auto table = io::read_csv((fs::path(po.out_dir) / "per_case.csv").string());
  EXPECT_EQ(table.header.front(), "case");
  EXPECT_EQ(table.header[1], "dice");
  EXPECT_EQ(table.header.size(), 1u + 12u + 2u);
  EXPECT_EQ(table.header[13], "status");
  EXPECT_EQ(table.rows[0][13], "scored");

  // One prediction moved by 2 mm, the other gone: both reported, none scored, an error.
  const auto moved_path = (fs::path(po.dir) / "synth" / "case_a.nii.gz").string();
  files[moved_path].geometry.origin[0] += 2;
  fs::remove(fs::path(po.dir) / "synth" / "case_b.nii.gz");
  const auto log_path = (fs::path(dir) / "scoring.log").string();
  try {
    const log::FileLog file_log(log_path, false);
    eval::score_predictions(split.entries, po, hooks);
    ADD_FAILURE() << "no error when no case could be scored";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no case of the split could be scored"), std::string::npos);
  }
  const auto failed = io::read_csv((fs::path(po.out_dir) / "per_case.csv").string());
  ASSERT_EQ(failed.rows.size(), 2u);
  EXPECT_EQ(failed.rows[0][13], "misaligned");
  EXPECT_NE(failed.rows[0][14].find("origin"), std::string::npos) << failed.rows[0][14];
  EXPECT_NE(failed.rows[0][14].find(moved_path), std::string::npos) << failed.rows[0][14];
  EXPECT_EQ(failed.rows[0][1], "nan");
  EXPECT_EQ(failed.rows[1][13], "missing");
  // Both are logged as warnings, one line each.
  std::vector<std::string> logged;
  std::istringstream log_lines(read_text(log_path));
  for (std::string line; std::getline(log_lines, line);) logged.push_back(line);
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_NE(logged[0].find("] [warning] [1/2] "), std::string::npos) << logged[0];
  EXPECT_NE(logged[0].find("not scored (misaligned)"), std::string::npos) << logged[0];
  EXPECT_NE(logged[1].find("not scored (missing)"), std::string::npos) << logged[1];
  const auto js = nlohmann::json::parse(read_text(fs::path(po.out_dir) / "summary.json"));
  EXPECT_EQ(js["cases"]["scored"], 0);
  EXPECT_EQ(js["cases"]["missing"], 1);
  EXPECT_EQ(js["cases"]["misaligned"], 1);

  // One case scored and one not: counted in summary.csv and printed.
  files[moved_path].geometry.origin[0] -= 2;
  const auto partial = eval::score_predictions(split.entries, po, hooks);
  const auto summary = io::read_csv((fs::path(po.out_dir) / "summary.csv").string());
  EXPECT_EQ(summary.rows[0][5], "1");  // n_cases: the scored one
  EXPECT_EQ(summary.rows[0][9], "1");  // n_unscored
  EXPECT_NE(eval::summary_text(partial).find("2 cases, 1 missing, 1 scored"), std::string::npos)
      << eval::summary_text(partial);
  EXPECT_THROW(eval::score_predictions(split.entries, {dir + "/none", po.out_dir, 1.0, 0}, hooks), Error);
}
