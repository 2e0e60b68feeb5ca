#include "trainer/host_shadow.h"

namespace convnet {

HostShadow::HostShadow(ParamStore& store, Sgd& sgd, const SgdOptions& options,
                       std::vector<ParamSegment> segments)
    : device_store_(store), device_sgd_(sgd) {
  if (store.flat_params().device() == Device::cpu) return;
  host_context_ = std::make_unique<Context>();
  host_store_ = std::make_unique<ParamStore>();
  host_store_->mirror(store, host_context_->allocator());
  host_sgd_ =
      std::make_unique<Sgd>(*host_context_, options, std::move(segments), store.num_parameters());
}

void HostShadow::pull() {
  if (!host_store_) return;
  copy_values(*host_store_, device_store_);
  if (device_sgd_.momentum_buffer().defined())
    copy_tensor(host_sgd_->mutable_momentum_buffer(), device_sgd_.momentum_buffer());
  host_sgd_->set_step_count(device_sgd_.step_count());
}

void HostShadow::push() {
  if (!host_store_) return;
  copy_values(device_store_, *host_store_);
  if (device_sgd_.momentum_buffer().defined())
    copy_tensor(device_sgd_.mutable_momentum_buffer(), host_sgd_->momentum_buffer());
  device_sgd_.set_step_count(host_sgd_->step_count());
}

}  // namespace convnet
