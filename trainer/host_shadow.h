// HostShadow: the host copy of a model's trainable state, for what only the
// host does: initialization, checkpoint and weights files, MPI broadcasts.
//
// On the CPU the shadow IS the model's ParamStore and Sgd, and pull()/push()
// do nothing. On the GPU it holds a host ParamStore with the device store's
// layout and a host Sgd with the same options, and copies parameters, BN
// buffers, counters, the momentum buffer and the step count between them
// (the host copy is packed, the device store aligned: see ParamStore::set_alignment):
// pull() device -> host (e.g. before saving), push() host -> device (after
// initializing or loading). Gradients are never copied.
#pragma once

#include <memory>
#include <vector>

#include "core/context.h"
#include "layers/sgd.h"
#include "models/param_store.h"

namespace convnet {

class HostShadow {
 public:
  // `sgd` updates `store`; `scope` as in ParamStore::decay_segments.
  HostShadow(ParamStore& store, Sgd& sgd, const SgdOptions& options, DecayScope scope);
  ParamStore& store() { return host_store_ ? *host_store_ : device_store_; }
  Sgd& sgd() { return host_sgd_ ? *host_sgd_ : device_sgd_; }
  void pull();
  void push();

 private:
  ParamStore& device_store_;
  Sgd& device_sgd_;
  std::unique_ptr<Context> host_context_;  // GPU models only
  std::unique_ptr<ParamStore> host_store_;
  std::unique_ptr<Sgd> host_sgd_;
};

}  // namespace convnet
