// Inference over a loader: the distributed evaluation shared by training,
// `convnet eval` and `convnet predict`.
//
// ModelNets builds the model once per batch size over one ParamStore (the
// last evaluation batch of a shard is usually smaller), so every net shares
// the same parameters and BN statistics.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "datasets/loader.h"
#include "layers/softmax_cross_entropy.h"
#include "models/zoo.h"
#include "trainer/progress.h"

namespace convnet {

class ModelNets {
 public:
  // Input images (batch, channels, height, width); the first get() finalizes
  // the store unless the caller built a net on it already.
  ModelNets(Context& context, const ModelSpec& spec, ParamStore& store, int64_t channels,
            int64_t height, int64_t width);
  Net& get(int64_t batch);
  SoftmaxCrossEntropy& loss(int64_t batch, double label_smoothing);
  int64_t classes() const;  // of the model's logits

 private:
  Context& context_;
  ModelSpec spec_;
  ParamStore& store_;
  int64_t channels_, height_, width_;
  std::map<int64_t, std::unique_ptr<Net>> nets_;
  std::map<std::pair<int64_t, double>, std::unique_ptr<SoftmaxCrossEntropy>> losses_;
};

// Sums over samples; reduce() adds up every rank's (true counts, no padding).
struct EvalTotals {
  explicit EvalTotals(int64_t classes = 0)
      : classes(classes), confusion(static_cast<std::size_t>(classes * classes), 0.0) {}
  double loss_sum = 0;  // sum over samples of the per-sample loss
  double correct1 = 0, correct5 = 0, count = 0;
  int64_t classes = 0;
  // (classes, classes) sample counts: row = true label, column = the top-1
  // prediction: the label itself when top1 counts it (no other logit equal or
  // larger, as count_top_k), else the first largest other logit.
  std::vector<double> confusion;

  // Counts logits (count, classes) against labels into the confusion matrix.
  void add_predictions(const Tensor& logits, const std::vector<int64_t>& labels);
  void reduce(Communicator& communicator);
  double loss() const { return count > 0 ? loss_sum / count : 0; }
  double top1() const { return count > 0 ? correct1 / count : 0; }
  double top5() const { return count > 0 ? correct5 / count : 0; }
  std::vector<double> class_counts() const;  // samples per true class
  std::vector<double> class_top1() const;    // per true class; 0 for a class without samples
};

// Per-class results as fields of `line`: class_names (the given ones, or
// "0".."K-1"), class_count and class_top1 per true class, and with_confusion
// the confusion matrix as rows (true class) of counts per predicted class.
void add_per_class(JsonLine& line, const EvalTotals& totals,
                   const std::vector<std::string>& class_names, bool with_confusion);

// Runs the loader's batches through the nets in inference mode; calls
// on_logits(batch, logits (count, K)) per batch when given. Not reduced.
EvalTotals evaluate(ModelNets& nets, Loader& loader,
                    const std::function<void(const Batch&, const Tensor&)>& on_logits = {});

}  // namespace convnet
