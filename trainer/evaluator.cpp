#include "trainer/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "layers/cuda/kernel_math.h"

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

int64_t ModelNets::classes() const {
  return spec_.num_classes > 0 ? spec_.num_classes : model_info(spec_.name).default_classes;
}

void EvalTotals::add_predictions(const Tensor& logits, const std::vector<int64_t>& labels) {
  const int64_t k = logits.shape()[1];
  const float* row = logits.data<float>();
  for (std::size_t i = 0; i < labels.size(); ++i, row += k) {
    const int64_t label = labels[i];
    if (label < 0 || label >= classes || k != classes) continue;
    // The label when top1 counts it correct, else the first largest other logit.
    int64_t predicted = label;
    if (!cuda::math::label_in_top_k(row, k, label, 1)) {
      predicted = label == 0 ? 1 : 0;
      for (int64_t c = 0; c < k; ++c)
        if (c != label && row[c] > row[predicted]) predicted = c;
    }
    confusion[static_cast<std::size_t>(label * classes + predicted)] += 1;
  }
}

void EvalTotals::reduce(Communicator& communicator) {
  std::vector<double> values{loss_sum, correct1, correct5, count};
  values.insert(values.end(), confusion.begin(), confusion.end());
  communicator.allreduce(values.data(), values.size(), ReduceOp::sum);
  loss_sum = values[0];
  correct1 = values[1];
  correct5 = values[2];
  count = values[3];
  std::copy(values.begin() + 4, values.end(), confusion.begin());
}

std::vector<double> EvalTotals::class_counts() const {
  std::vector<double> counts(static_cast<std::size_t>(classes), 0.0);
  for (int64_t t = 0; t < classes; ++t)
    for (int64_t p = 0; p < classes; ++p) counts[t] += confusion[t * classes + p];
  return counts;
}

std::vector<double> EvalTotals::class_top1() const {
  const std::vector<double> counts = class_counts();
  std::vector<double> top1(counts.size(), 0.0);
  for (int64_t t = 0; t < classes; ++t)
    if (counts[t] > 0) top1[t] = confusion[t * classes + t] / counts[t];
  return top1;
}

EvalTotals evaluate(ModelNets& nets, Loader& loader,
                    const std::function<void(const Batch&, const Tensor&)>& on_logits) {
  EvalTotals totals(nets.classes());
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
    totals.add_predictions(logits, batch.labels);
    if (on_logits) on_logits(batch, logits);
  }
  return totals;
}

void add_per_class(JsonLine& line, const EvalTotals& totals,
                   const std::vector<std::string>& class_names, bool with_confusion) {
  std::vector<std::string> names = class_names;
  names.resize(static_cast<std::size_t>(totals.classes));
  for (std::size_t k = class_names.size(); k < names.size(); ++k) names[k] = std::to_string(k);
  line.add("class_names", names)
      .add("class_count", totals.class_counts())
      .add("class_top1", totals.class_top1());
  if (!with_confusion) return;
  std::vector<std::vector<int64_t>> rows(static_cast<std::size_t>(totals.classes));
  for (int64_t t = 0; t < totals.classes; ++t)
    for (int64_t p = 0; p < totals.classes; ++p)
      rows[t].push_back(static_cast<int64_t>(totals.confusion[t * totals.classes + p]));
  line.add("confusion", rows);
}

}  // namespace convnet
