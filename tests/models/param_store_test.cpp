// ParamStore's aligned layout (the GPU backend's): entries start at multiples
// of the alignment, the weight-decay segments tile the padded buffer, and
// values copy between aligned and packed stores entry by entry.
#include "models/param_store.h"

#include <gtest/gtest.h>

#include "core/context.h"

namespace convnet {
namespace {

void register_entries(ParamStore& store) {
  store.add_parameter("conv.weight", Shape{5, 3, 3, 3},
                      ParamRole::weight);  // 135, not a multiple of 64
  store.add_batch_norm("bn", 5);
  store.add_parameter("fc.weight", Shape{10, 5}, ParamRole::weight);
  store.add_parameter("fc.bias", Shape{10}, ParamRole::bn_or_bias);
}

TEST(ParamStore, AlignedLayoutTilesAndCopiesBothWays) {
  Context context;
  ParamStore aligned;
  register_entries(aligned);
  aligned.set_alignment(64);
  aligned.finalize(context.allocator());
  ParamStore packed;
  packed.mirror(aligned, context.allocator());
  EXPECT_EQ(packed.num_parameters(), 135 + 10 + 50 + 10);
  EXPECT_EQ(packed.flat_size(), packed.num_parameters());
  EXPECT_EQ(aligned.num_parameters(), packed.num_parameters());
  EXPECT_GT(aligned.flat_size(), aligned.num_parameters());
  for (const ParamEntry& e : aligned.entries()) {
    if (e.kind != EntryKind::counter) {
      EXPECT_EQ(e.offset % 64, 0) << e.name;
    }
  }

  for (DecayScope scope : {DecayScope::all_parameters, DecayScope::weights_only}) {
    const bool exclude = scope == DecayScope::weights_only;
    const std::vector<ParamSegment> segments = aligned.decay_segments(scope);
    int64_t next = 0;
    for (const ParamSegment& s : segments) {
      EXPECT_EQ(s.offset, next);
      next += s.size;
    }
    EXPECT_EQ(next, aligned.flat_size());
    // Every entry lies inside a segment with its decay setting.
    for (const ParamEntry& e : aligned.entries()) {
      if (e.kind != EntryKind::parameter) continue;
      bool found = false;
      for (const ParamSegment& s : segments)
        if (e.offset >= s.offset && e.offset + e.shape.numel() <= s.offset + s.size)
          found = s.apply_weight_decay == !(exclude && e.bn_or_bias);
      EXPECT_TRUE(found) << e.name;
    }
  }

  float* p = packed.flat_params().data<float>();
  for (int64_t i = 0; i < packed.flat_size(); ++i) p[i] = 0.5f * static_cast<float>(i + 1);
  packed.buffer(packed.find("bn.running_var")).fill(3.0f);
  packed.counters()[0] = 7;
  copy_values(aligned, packed);
  EXPECT_EQ(aligned.param(aligned.find("fc.bias")).to_vector(),
            packed.param(packed.find("fc.bias")).to_vector());
  EXPECT_EQ(aligned.buffer(aligned.find("bn.running_var")).to_vector(),
            std::vector<float>(5, 3.0f));
  EXPECT_EQ(aligned.counters()[0], 7);
  ParamStore back;
  back.mirror(aligned, context.allocator());
  copy_values(back, aligned);
  EXPECT_EQ(back.flat_params().to_vector(), packed.flat_params().to_vector());
  EXPECT_EQ(back.flat_buffers().to_vector(), packed.flat_buffers().to_vector());
}

}  // namespace
}  // namespace convnet
