#include "trainer/host_shadow.h"

namespace convnet {

HostShadow::HostShadow(ParamStore& store, Sgd& sgd, const SgdOptions& options, DecayScope scope)
    : device_store_(store), device_sgd_(sgd) {
  if (store.flat_params().device() == Device::cpu) return;
  host_context_ = std::make_unique<Context>();
  host_store_ = std::make_unique<ParamStore>();
  host_store_->mirror(store, host_context_->allocator());
  host_sgd_ = std::make_unique<Sgd>(*host_context_, options, host_store_->decay_segments(scope),
                                    host_store_->flat_size());
}

void HostShadow::pull() {
  if (!host_store_) return;
  copy_values(*host_store_, device_store_);
  if (device_sgd_.momentum_buffer().defined())
    copy_entries(host_sgd_->mutable_momentum_buffer(), *host_store_, device_sgd_.momentum_buffer(),
                 device_store_, EntryKind::parameter);
  host_sgd_->set_step_count(device_sgd_.step_count());
}

void HostShadow::push() {
  if (!host_store_) return;
  copy_values(device_store_, *host_store_);
  if (device_sgd_.momentum_buffer().defined())
    copy_entries(device_sgd_.mutable_momentum_buffer(), device_store_, host_sgd_->momentum_buffer(),
                 *host_store_, EntryKind::parameter);
  device_sgd_.set_step_count(host_sgd_->step_count());
}

}  // namespace convnet
