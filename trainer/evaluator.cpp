#include "trainer/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace convnet {

ModelNets::ModelNets(Context& context, const ModelSpec& spec, ParamStore& store, int64_t channels,
                     int64_t height, int64_t width)
    : context_(context),
      spec_(spec),
      store_(store),
      channels_(channels),
      height_(height),
      width_(width) {}

Net& ModelNets::get(int64_t batch) {
  auto it = nets_.find(batch);
  if (it != nets_.end()) return *it->second;
  if (store_.finalized()) store_.begin_rebind();
  auto net = build_model(context_, spec_, store_, Shape{batch, channels_, height_, width_});
  return *nets_.emplace(batch, std::move(net)).first->second;
}

SoftmaxCrossEntropy& ModelNets::loss(int64_t batch, double label_smoothing) {
  auto key = std::make_pair(batch, label_smoothing);
  auto it = losses_.find(key);
  if (it != losses_.end()) return *it->second;
  auto loss = SoftmaxCrossEntropy::create(context_, "loss", {.label_smoothing = label_smoothing},
                                          get(batch).output().shape());
  return *losses_.emplace(key, std::move(loss)).first->second;
}

void EvalTotals::reduce(Communicator& communicator) {
  double values[4] = {loss_sum, correct1, correct5, count};
  communicator.allreduce(values, 4, ReduceOp::sum);
  loss_sum = values[0];
  correct1 = values[1];
  correct5 = values[2];
  count = values[3];
}

EvalTotals evaluate(ModelNets& nets, Loader& loader,
                    const std::function<void(const Batch&, const Tensor&)>& on_logits) {
  EvalTotals totals;
  Batch batch;
  while (loader.next(&batch)) {
    Net& net = nets.get(batch.count);
    copy_from_host(net.input(), batch.images.data());
    net.forward(Mode::inference);
    const double loss = nets.loss(batch.count, 0.0).forward(net.output(), batch.labels);
    const Tensor logits = host_copy_if_device(net.output());
    totals.loss_sum += loss * batch.count;
    totals.correct1 += count_top_k(logits, batch.labels, 1);
    totals.correct5 += count_top_k(logits, batch.labels, std::min<int64_t>(5, logits.shape()[1]));
    totals.count += batch.count;
    if (on_logits) on_logits(batch, logits);
  }
  return totals;
}

}  // namespace convnet
