#include "models/drop_path.h"

#include "core/error.h"
#include "datasets/splitmix64.h"

namespace convnet {

bool drop_path_dropped(uint64_t seed, int64_t step, int64_t block, double p) {
  if (p <= 0 || step < 0) return false;
  uint64_t z = splitmix64_mix(seed ^ 0x5d1ed5ee0d7ba7e5ULL);
  z = splitmix64_mix(z ^ static_cast<uint64_t>(step));
  z = splitmix64_mix(z ^ static_cast<uint64_t>(block));
  const double uniform = static_cast<double>(z >> 11) * 0x1.0p-53;  // [0, 1)
  return uniform < p;
}

DropPathOp::DropPathOp(const StepState& state, int64_t block, double p)
    : state_(state), block_(block), p_(p) {
  CONVNET_CHECK(p >= 0 && p < 1, "drop-path probability must lie in [0, 1), got ", p);
}

void DropPathOp::forward(Mode mode, const std::vector<Tensor>& in, const Tensor& out) {
  const bool training = mode == Mode::training;
  dropped_ = training && drop_path_dropped(state_.seed, state_.step, block_, p_);
  scale_ = training ? static_cast<float>(1.0 / (1.0 - p_)) : 1.0f;
  if (dropped_) {
    out.set_zero();
  } else if (scale_ != 1.0f || out.raw_data() != in[0].raw_data()) {
    write_scaled(out, in[0], scale_, GradMode::overwrite);
  }
}

void DropPathOp::backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                          const std::vector<Tensor>& din, const std::vector<GradMode>& modes) {
  if (!din[0].defined()) return;
  if (!dropped_) return write_scaled(din[0], dout, scale_, modes[0]);
  if (modes[0] == GradMode::overwrite) din[0].set_zero();
}

}  // namespace convnet
