// ParamStore: every parameter, buffer and counter of a model, by state_dict name.
//
// Model builders register entries in forward (state_dict) order. finalize()
// then lays them out in three flat buffers:
//   params   (P) f32  trainable parameters, in REVERSE registration order, so
//                     that backward produces gradients from the front of the
//                     buffer to the back and gradient buckets fill in order;
//   grads    (P) f32  same layout as params;
//   buffers  (B) f32  BatchNorm running statistics (not trained);
// plus one int64 per BatchNorm for num_batches_tracked, and the step's sums
// of BatchNorm batch statistics (2B f32, see batch_stat_sums).
// Each entry is then a view into its flat buffer (param(id), grad(id), ...).
//
// A second build of the same model (another batch size) re-registers the
// same names in the same order against the finalized store: registration then
// only checks that name, kind and shape match and returns the existing id.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/tensor.h"
#include "layers/batch_norm.h"
#include "layers/sgd.h"

namespace convnet {

enum class EntryKind { parameter, buffer, counter };
// A parameter's role for weight decay (--no-bn-decay skips BN parameters and biases).
enum class ParamRole { weight, bn_or_bias };
// Which parameters weight decay applies to.
enum class DecayScope { all_parameters, weights_only };

struct ParamEntry {
  std::string name;  // torchvision state_dict key, e.g. "layer1.0.bn1.running_mean"
  EntryKind kind = EntryKind::parameter;
  Shape shape;              // empty (rank 0) for counters
  bool bn_or_bias = false;  // a BatchNorm parameter or a bias (weight decay may skip these)
  int64_t offset = 0;       // into the flat buffer of its kind (elements), or counter index
};

// The entries of one BatchNorm: NAME.weight, .bias, .running_mean,
// .running_var and .num_batches_tracked.
struct BatchNormEntries {
  int weight = -1, bias = -1, running_mean = -1, running_var = -1, batches = -1;
};

class ParamStore {
 public:
  ParamStore() = default;
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  // Registration (before finalize) or re-binding (after). Returns the entry id.
  int add_parameter(const std::string& name, const Shape& shape, ParamRole role);
  int add_buffer(const std::string& name, const Shape& shape);
  int add_counter(const std::string& name);
  // The five entries of a BatchNorm over `channels`, in torchvision's order.
  BatchNormEntries add_batch_norm(const std::string& name, int64_t channels);

  // Entries start at multiples of `floats` elements in the flat buffers (1:
  // packed, the default). The GPU backend uses 64 (256 bytes), the alignment
  // cuDNN's vectorized kernels expect of every weight; the gaps stay zero.
  // Call before finalize().
  void set_alignment(int64_t floats);
  int64_t alignment() const { return alignment_; }
  // Allocates the flat buffers (zero-filled) and fixes the layout.
  void finalize(Allocator& allocator);
  bool finalized() const { return finalized_; }
  // Registers `other`'s entries (this store must be empty) and finalizes on
  // `allocator`: the same layout in other memory, e.g. a host copy of a GPU
  // model's store for initialization and files (see copy_values).
  void mirror(const ParamStore& other, Allocator& allocator);
  // Resets the re-binding cursor before a second build of the same model.
  void begin_rebind();

  // Views into the flat buffers (finalized stores only).
  Tensor param(int id) const;
  Tensor grad(int id) const;
  Tensor buffer(int id) const;
  int64_t& counter(int id);
  int64_t counter(int id) const;

  // Entries registered so far by the current build (the rebind cursor after
  // finalize): lets a Net attribute entries to the op built after them.
  int registered() const {
    return finalized_ ? static_cast<int>(rebind_cursor_) : static_cast<int>(entries_.size());
  }
  const std::vector<ParamEntry>& entries() const { return entries_; }  // state_dict order
  int find(const std::string& name) const;                             // -1 when absent
  int64_t num_parameters() const { return num_params_; }               // trainable elements
  // Length of flat_params()/flat_grads(): num_parameters() plus alignment gaps.
  int64_t flat_size() const { return flat_size_; }
  // Length of flat_buffers().
  int64_t flat_buffer_size() const { return flat_buffer_size_; }
  int64_t num_buffer_elements() const { return num_buffer_elements_; }

  const Tensor& flat_params() const { return params_; }    // (P)
  const Tensor& flat_grads() const { return grads_; }      // (P)
  const Tensor& flat_buffers() const { return buffers_; }  // (B), undefined when B == 0
  std::vector<int64_t>& counters() { return counters_; }
  const std::vector<int64_t>& counters() const { return counters_; }
  void zero_grads() const;
  // Where a BatchNorm's training forwards sum their batch statistics during
  // a step (RunningStats::per_step): views of flat_stat_sums(), which holds
  // two planes laid out as flat_buffers(): plane 0 has the sums of means at
  // running_mean's place and of variances at running_var's, plane 1 the sums
  // of squared means at running_mean's place (zeros elsewhere). Allreduced
  // (summed) over ranks once per step; zero_stat_sums() after each update.
  BatchStatSums batch_stat_sums(const BatchNormEntries& entries) const;
  const Tensor& flat_stat_sums() const { return stat_sums_; }  // (2B), undefined when B == 0
  void zero_stat_sums() const;
  // Weight-decay segments tiling the flat parameter buffer (gaps included), for Sgd: every
  // parameter gets decay, except BN parameters and biases under DecayScope::weights_only.
  std::vector<ParamSegment> decay_segments(DecayScope scope) const;

 private:
  int add(ParamEntry entry);
  const ParamEntry& entry(int id, EntryKind kind) const;

  std::vector<ParamEntry> entries_;
  bool finalized_ = false;
  std::size_t rebind_cursor_ = 0;
  int64_t num_params_ = 0;
  int64_t num_buffer_elements_ = 0;
  int64_t alignment_ = 1;
  int64_t flat_size_ = 0, flat_buffer_size_ = 0;
  Tensor params_, grads_, buffers_, stat_sums_;
  std::vector<int64_t> counters_;
};

// dst's parameters, buffers and counters = src's, for two finalized stores of
// the same model (same entries) on any devices and alignments: the GPU
// backend keeps a packed host store as the master copy for initialization,
// weights files and checkpoints, and copies it to and from the (aligned)
// device store. Waits for the copy.
void copy_values(ParamStore& dst, const ParamStore& src);
// Each `kind` entry's elements of src_flat (laid out as src) into dst_flat
// (laid out as dst): parameters, buffers, or a flat optimizer state such as
// momentum (laid out as the parameters). Waits for the copies.
void copy_entries(const Tensor& dst_flat, const ParamStore& dst, const Tensor& src_flat,
                  const ParamStore& src, EntryKind kind);

}  // namespace convnet
