#include "models/param_store.h"

#include <cstring>

#include "core/error.h"

namespace convnet {

int ParamStore::add(ParamEntry entry) {
  if (finalized_) {
    CONVNET_CHECK(rebind_cursor_ < entries_.size(), "model rebuild registers more entries (",
                  entry.name, ") than the first build");
    const ParamEntry& existing = entries_[rebind_cursor_];
    CONVNET_CHECK(
        existing.name == entry.name && existing.kind == entry.kind && existing.shape == entry.shape,
        "model rebuild registers ", entry.name, " ", entry.shape, " where the first build had ",
        existing.name, " ", existing.shape);
    return static_cast<int>(rebind_cursor_++);
  }
  CONVNET_CHECK(find(entry.name) < 0, "duplicate parameter name ", entry.name);
  CONVNET_CHECK(entry.kind == EntryKind::counter || entry.shape.all_positive(), "parameter ",
                entry.name, " has shape ", entry.shape);
  entries_.push_back(std::move(entry));
  return static_cast<int>(entries_.size() - 1);
}

int ParamStore::add_parameter(const std::string& name, const Shape& shape, ParamRole role) {
  return add({name, EntryKind::parameter, shape, role == ParamRole::bn_or_bias, 0});
}

int ParamStore::add_buffer(const std::string& name, const Shape& shape) {
  return add({name, EntryKind::buffer, shape, false, 0});
}

int ParamStore::add_counter(const std::string& name) {
  return add({name, EntryKind::counter, Shape{}, false, 0});
}

BatchNormEntries ParamStore::add_batch_norm(const std::string& name, int64_t channels) {
  const Shape c{channels};
  BatchNormEntries e;
  e.weight = add_parameter(name + ".weight", c, ParamRole::bn_or_bias);
  e.bias = add_parameter(name + ".bias", c, ParamRole::bn_or_bias);
  e.running_mean = add_buffer(name + ".running_mean", c);
  e.running_var = add_buffer(name + ".running_var", c);
  e.batches = add_counter(name + ".num_batches_tracked");
  return e;
}

void ParamStore::mirror(const ParamStore& other, Allocator& allocator) {
  CONVNET_CHECK(entries_.empty() && !finalized_, "mirror into a store that has entries");
  entries_ = other.entries_;
  finalize(allocator);
}

void ParamStore::set_alignment(int64_t floats) {
  CONVNET_CHECK(!finalized_ && floats > 0, "set_alignment(", floats,
                ") needs a positive value before finalize()");
  alignment_ = floats;
}

void ParamStore::finalize(Allocator& allocator) {
  CONVNET_CHECK(!finalized_, "parameter store finalized twice");
  num_params_ = 0;
  num_buffer_elements_ = 0;
  int64_t counters = 0;
  const auto aligned = [this](int64_t offset) {
    return (offset + alignment_ - 1) / alignment_ * alignment_;
  };
  // Parameters in reverse registration order: the last layer's come first.
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
    if (it->kind == EntryKind::parameter) {
      it->offset = aligned(flat_size_);
      flat_size_ = it->offset + it->shape.numel();
      num_params_ += it->shape.numel();
    }
  for (ParamEntry& e : entries_) {
    if (e.kind == EntryKind::buffer) {
      e.offset = aligned(flat_buffer_size_);
      flat_buffer_size_ = e.offset + e.shape.numel();
      num_buffer_elements_ += e.shape.numel();
    } else if (e.kind == EntryKind::counter) {
      e.offset = counters++;
    }
  }
  CONVNET_CHECK(num_params_ > 0, "model has no parameters");
  params_ = Tensor::zeros(Shape{flat_size_}, allocator);
  grads_ = Tensor::zeros(Shape{flat_size_}, allocator);
  if (flat_buffer_size_ > 0) {
    buffers_ = Tensor::zeros(Shape{flat_buffer_size_}, allocator);
    stat_sums_ = Tensor::zeros(Shape{2 * flat_buffer_size_}, allocator);
  }
  counters_.assign(counters, 0);
  finalized_ = true;
  rebind_cursor_ = entries_.size();
}

void ParamStore::begin_rebind() {
  CONVNET_CHECK(finalized_, "rebind of a parameter store that was never finalized");
  rebind_cursor_ = 0;
}

const ParamEntry& ParamStore::entry(int id, EntryKind kind) const {
  CONVNET_CHECK(finalized_, "parameter store used before finalize()");
  CONVNET_CHECK(id >= 0 && id < static_cast<int>(entries_.size()), "bad parameter id ", id);
  const ParamEntry& e = entries_[id];
  CONVNET_CHECK(e.kind == kind, "entry ", e.name, " is not of the requested kind");
  return e;
}

namespace {
Tensor view(const Tensor& flat, const ParamEntry& e) {
  return Tensor::wrap(flat.data<float>() + e.offset, e.shape, DType::f32, flat.device());
}
}  // namespace

Tensor ParamStore::param(int id) const { return view(params_, entry(id, EntryKind::parameter)); }
Tensor ParamStore::grad(int id) const { return view(grads_, entry(id, EntryKind::parameter)); }
Tensor ParamStore::buffer(int id) const { return view(buffers_, entry(id, EntryKind::buffer)); }
int64_t& ParamStore::counter(int id) { return counters_[entry(id, EntryKind::counter).offset]; }
int64_t ParamStore::counter(int id) const {
  return counters_[entry(id, EntryKind::counter).offset];
}

int ParamStore::find(const std::string& name) const {
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].name == name) return static_cast<int>(i);
  return -1;
}

void ParamStore::zero_grads() const { grads_.set_zero(); }

BatchStatSums ParamStore::batch_stat_sums(const BatchNormEntries& entries) const {
  const ParamEntry& mean = entry(entries.running_mean, EntryKind::buffer);
  const ParamEntry& var = entry(entries.running_var, EntryKind::buffer);
  const Tensor second_plane = stat_sums_.slice(0, flat_buffer_size_, 2 * flat_buffer_size_);
  return {view(stat_sums_, mean), view(stat_sums_, var), view(second_plane, mean)};
}

void ParamStore::zero_stat_sums() const {
  if (stat_sums_.defined()) stat_sums_.set_zero();
}

std::vector<ParamSegment> ParamStore::decay_segments(DecayScope scope) const {
  CONVNET_CHECK(finalized_, "parameter store used before finalize()");
  std::vector<ParamSegment> segments;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (it->kind != EntryKind::parameter) continue;
    const bool decay = !(scope == DecayScope::weights_only && it->bn_or_bias);
    // A segment runs from the previous one's end (over an alignment gap,
    // which holds zeros) to the end of its last entry.
    const int64_t end = it->offset + it->shape.numel();
    const int64_t start = segments.empty() ? 0 : segments.back().offset + segments.back().size;
    if (!segments.empty() && segments.back().apply_weight_decay == decay)
      segments.back().size = end - segments.back().offset;
    else
      segments.push_back({start, end - start, decay});
  }
  return segments;
}

void copy_entries(const Tensor& dst_flat, const ParamStore& dst, const Tensor& src_flat,
                  const ParamStore& src, EntryKind kind) {
  for (std::size_t i = 0; i < dst.entries().size(); ++i) {
    const ParamEntry& to = dst.entries()[i];
    const ParamEntry& from = src.entries()[i];
    CONVNET_CHECK(to.name == from.name && to.shape == from.shape && to.kind == from.kind,
                  "copy between stores of different models: ", to.name, " and ", from.name);
    if (to.kind != kind) continue;
    const int64_t n = to.shape.numel();
    copy_tensor(dst_flat.slice(0, to.offset, to.offset + n),
                src_flat.slice(0, from.offset, from.offset + n));
  }
}

void copy_values(ParamStore& dst, const ParamStore& src) {
  CONVNET_CHECK(dst.finalized() && src.finalized(), "copy_values between unfinalized stores");
  CONVNET_CHECK(dst.entries().size() == src.entries().size() &&
                    dst.num_parameters() == src.num_parameters() &&
                    dst.num_buffer_elements() == src.num_buffer_elements(),
                "copy_values between stores of different models (", src.entries().size(), " and ",
                dst.entries().size(), " entries)");
  if (dst.alignment() == src.alignment()) {
    copy_tensor(dst.flat_params(), src.flat_params());  // same layout: one copy each
    if (dst.flat_buffers().defined()) copy_tensor(dst.flat_buffers(), src.flat_buffers());
  } else {
    copy_entries(dst.flat_params(), dst, src.flat_params(), src, EntryKind::parameter);
    copy_entries(dst.flat_buffers(), dst, src.flat_buffers(), src, EntryKind::buffer);
  }
  dst.counters() = src.counters();
}

}  // namespace convnet
