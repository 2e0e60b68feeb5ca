#include "trainer/model_ema.h"

#include <algorithm>

#include "core/error.h"
#include "layers/layer.h"

namespace convnet {
namespace {

Tensor copy_of(const Tensor& t, Allocator& allocator) {
  if (!t.defined()) return Tensor();
  Tensor copy = Tensor::empty(t.shape(), allocator);
  copy_tensor(copy, t);
  return copy;
}

}  // namespace

ModelEma::ModelEma(Context& context, ParamStore& store, double decay, bool warmup)
    : store_(store), decay_(decay), warmup_(warmup) {
  CONVNET_CHECK(decay > 0 && decay < 1, "--model-ema-decay must lie in (0, 1), got ", decay);
  params_ = copy_of(store.flat_params(), context.allocator());
  buffers_ = copy_of(store.flat_buffers(), context.allocator());
  scratch_ = Tensor::empty(Shape{std::max(store.flat_size(), store.flat_buffer_size())},
                           context.allocator());
}

double ModelEma::next_decay() const {
  if (!warmup_) return decay_;
  const double n = static_cast<double>(updates_);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

void ModelEma::update() {
  const float d = static_cast<float>(next_decay());
  for (const auto& [ema, model] : {std::make_pair(params_, store_.flat_params()),
                                   std::make_pair(buffers_, store_.flat_buffers())}) {
    if (!ema.defined()) continue;
    scale_in_place(ema, d);
    write_scaled(ema, model, 1.0f - d, GradMode::accumulate);
  }
  ++updates_;
}

void ModelEma::swap_with_model() {
  for (const auto& [ema, model] : {std::make_pair(params_, store_.flat_params()),
                                   std::make_pair(buffers_, store_.flat_buffers())}) {
    if (!ema.defined()) continue;
    const Tensor temp = scratch_.slice(0, 0, ema.numel());
    copy_tensor(temp, model);
    copy_tensor(model, ema);
    copy_tensor(ema, temp);
  }
}

}  // namespace convnet
