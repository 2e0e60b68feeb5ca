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

#include "comm/communicator.h"
#include "datasets/loader.h"
#include "layers/softmax_cross_entropy.h"
#include "models/zoo.h"

namespace convnet {

class ModelNets {
 public:
  // Input images (batch, channels, height, width); the first get() finalizes
  // the store unless the caller built a net on it already.
  ModelNets(Context& context, const ModelSpec& spec, ParamStore& store, int64_t channels,
            int64_t height, int64_t width);
  Net& get(int64_t batch);
  SoftmaxCrossEntropy& loss(int64_t batch, double label_smoothing);

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
  double loss_sum = 0;  // sum over samples of the per-sample loss
  double correct1 = 0, correct5 = 0, count = 0;
  void reduce(Communicator& communicator);
  double loss() const { return count > 0 ? loss_sum / count : 0; }
  double top1() const { return count > 0 ? correct1 / count : 0; }
  double top5() const { return count > 0 ? correct5 / count : 0; }
};

// Runs the loader's batches through the nets in inference mode; calls
// on_logits(batch, logits (count, K)) per batch when given. Not reduced.
EvalTotals evaluate(ModelNets& nets, Loader& loader,
                    const std::function<void(const Batch&, const Tensor&)>& on_logits = {});

}  // namespace convnet
