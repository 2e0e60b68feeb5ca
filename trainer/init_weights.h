// Fine-tuning: a model's starting point from a weights file or checkpoint
// (`convnet train --init-weights FILE`): its parameters, BN running
// statistics and counters, no optimizer state and no data position.
//
// Where the new run differs from the file's:
//   classes      the classifier (the model's last weight and bias) keeps its
//                fresh initialization for the new class count;
//   in channels  an error naming the stem, unless adapt_stem: torchvision's
//                and timm's convention (timm's adapt_input_conv) for the stem
//                weight (C_out, C_file, K, K) -> (C_out, C_new, K, K): summed
//                over the file's channels for one new channel, else new
//                channel c is file channel c mod C_file scaled by C_file / C_new;
//   anything else (another model, a parameter of another shape) is an error
//                naming the parameter and both shapes.
#pragma once

#include <string>

#include "models/param_store.h"

namespace convnet {

struct InitWeightsTarget {
  std::string model;
  int64_t classes = 0, in_channels = 0;
  bool adapt_stem = false;
};

// Loads `path` into the (finalized, host) store of the target model; returns
// one line saying what was loaded and what was re-initialized or adapted.
std::string load_initial_weights(const std::string& path, ParamStore& store,
                                 const InitWeightsTarget& target);

}  // namespace convnet
