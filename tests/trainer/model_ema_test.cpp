#include "trainer/model_ema.h"

#include <gtest/gtest.h>

#include "models/zoo.h"

namespace convnet {
namespace {

struct Model {
  Context context;
  ParamStore store;
  std::unique_ptr<Net> net;
  Model() {
    net = build_model(context, {.name = "resnet20"}, store, Shape{1, 3, 8, 8});
    initialize_parameters(store, 3);
  }
  void set_all(float value) {
    store.flat_params().fill(value);
    store.flat_buffers().fill(value);
  }
};

// ema = d * ema + (1 - d) * model over parameters and statistics; with the
// warm-up d = min(decay, (1 + n) / (10 + n)).
TEST(ModelEma, AveragesParametersAndStatistics) {
  Model m;
  m.set_all(1.0f);
  ModelEma ema(m.context, m.store, 0.5, /*warmup=*/false);
  m.set_all(3.0f);
  ema.update();  // 0.5 * 1 + 0.5 * 3 = 2
  m.set_all(0.0f);
  ema.update();  // 0.5 * 2 = 1
  EXPECT_EQ(ema.updates(), 2);
  ema.swap_with_model();  // the model now holds the average, the average 0
  EXPECT_FLOAT_EQ(m.store.flat_params().to_vector()[5], 1.0f);
  EXPECT_FLOAT_EQ(m.store.flat_buffers().to_vector()[7], 1.0f);
  ema.swap_with_model();  // and back, exactly
  EXPECT_FLOAT_EQ(m.store.flat_params().to_vector()[5], 0.0f);
  m.set_all(1.0f);
  ema.update();
  ema.swap_with_model();
  EXPECT_FLOAT_EQ(m.store.flat_params().to_vector()[0], 1.0f);  // 0.5 * 1 + 0.5 * 1
}

TEST(ModelEma, WarmupFollowsTimm) {
  Model m;
  ModelEma ema(m.context, m.store, 0.9998, /*warmup=*/true);
  EXPECT_DOUBLE_EQ(ema.next_decay(), 0.1);  // (1 + 0) / (10 + 0)
  ema.update();
  EXPECT_DOUBLE_EQ(ema.next_decay(), 2.0 / 11.0);
  ema.set_updates(100000);
  EXPECT_DOUBLE_EQ(ema.next_decay(), 0.9998);
  ModelEma plain(m.context, m.store, 0.99, /*warmup=*/false);
  EXPECT_DOUBLE_EQ(plain.next_decay(), 0.99);
  EXPECT_THROW(ModelEma(m.context, m.store, 1.0, false), Error);
}

}  // namespace
}  // namespace convnet
