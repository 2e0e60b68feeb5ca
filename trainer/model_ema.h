// An exponential moving average of a model's weights (`--model-ema`, as
// timm's ModelEmaV2 with its warm-up): after every applied optimizer step,
//
//   d = min(decay, (1 + n) / (10 + n))     (n: updates so far; without warm-up d = decay)
//   ema = d * ema + (1 - d) * model        over the parameters and the BN running statistics
//
// (BN's num_batches_tracked counters are the model's). Every rank keeps its
// own: the replicas are identical, so the averages are too, without any
// communication, and a resumed run continues them exactly (checkpoints hold
// them, trainer/checkpoint.h). Tensors live on the model's device; the
// trainer moves them to and from the host through the model
// (swap_with_model and its HostShadow).
#pragma once

#include <cstdint>

#include "core/context.h"
#include "models/param_store.h"

namespace convnet {

class ModelEma {
 public:
  // Starts as a copy of the store's current (initialized or loaded) model.
  ModelEma(Context& context, ParamStore& store, double decay, bool warmup);

  // The decay the next update uses.
  double next_decay() const;
  void update();
  // Exchanges the model's parameters and statistics with the average (twice:
  // back), so that the model's nets evaluate the average.
  void swap_with_model();
  int64_t updates() const { return updates_; }
  void set_updates(int64_t updates) { updates_ = updates; }  // a resumed average

 private:
  ParamStore& store_;
  double decay_;
  bool warmup_;
  int64_t updates_ = 0;
  Tensor params_, buffers_, scratch_;
};

}  // namespace convnet
