#include "trainer/init_weights.h"

#include <set>

#include "core/error.h"
#include "models/weights_file.h"

namespace convnet {
namespace {

// The first convolution weight (rank 4) and the last weight/bias pair.
struct Ends {
  int stem = -1;
  std::set<std::string> classifier;
  std::string classifier_weight;
};

Ends model_ends(const ParamStore& store) {
  Ends ends;
  std::vector<int> parameters;
  for (std::size_t i = 0; i < store.entries().size(); ++i)
    if (store.entries()[i].kind == EntryKind::parameter) parameters.push_back(static_cast<int>(i));
  for (int id : parameters)
    if (store.entries()[id].shape.rank() == 4) {
      ends.stem = id;
      break;
    }
  for (std::size_t k = parameters.size() >= 2 ? parameters.size() - 2 : 0; k < parameters.size();
       ++k)
    ends.classifier.insert(store.entries()[parameters[k]].name);
  if (parameters.size() >= 2)
    ends.classifier_weight = store.entries()[parameters[parameters.size() - 2]].name;
  return ends;
}

// timm's adapt_input_conv: (O, I, K, K) -> (O, new_channels, K, K).
std::vector<float> adapt_stem(const std::vector<float>& w, const Shape& shape,
                              int64_t new_channels) {
  const int64_t out = shape[0], in = shape[1], kk = shape[2] * shape[3];
  std::vector<float> adapted(static_cast<std::size_t>(out * new_channels * kk), 0.0f);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t c = 0; c < new_channels; ++c)
      for (int64_t p = 0; p < kk; ++p) {
        float& v = adapted[(o * new_channels + c) * kk + p];
        if (new_channels == 1) {
          for (int64_t i = 0; i < in; ++i) v += w[(o * in + i) * kk + p];
        } else {
          v = w[(o * in + c % in) * kk + p] * static_cast<float>(in) /
              static_cast<float>(new_channels);
        }
      }
  return adapted;
}

}  // namespace

std::string load_initial_weights(const std::string& path, ParamStore& store,
                                 const InitWeightsTarget& target) {
  const WeightsMetadata meta = read_weights_metadata(path);
  CONVNET_CHECK(meta.model == target.model, "--init-weights ", path, " holds ", meta.model,
                " weights, but --model is ", target.model);
  const Ends ends = model_ends(store);
  std::set<std::string> skipped;
  std::string account = "initialized from " + path + " (weights and BN statistics)";
  if (meta.num_classes != target.classes) {
    skipped = ends.classifier;
    account += "; classifier " + ends.classifier_weight + " re-initialized for " +
               std::to_string(target.classes) + " classes (the file has " +
               std::to_string(meta.num_classes) + ")";
  }
  const bool other_channels = meta.in_channels != target.in_channels;
  const std::string stem = ends.stem >= 0 ? store.entries()[ends.stem].name : "";
  CONVNET_CHECK(!other_channels || target.adapt_stem, "--init-weights ", path, " was trained on ",
                meta.in_channels, "-channel images but the data has ", target.in_channels,
                ": its stem ", stem, " does not fit (pass --adapt-stem to sum or repeat its ",
                "filters over the channels, as torchvision and timm do)");
  if (other_channels) skipped.insert(stem);
  load_weights(path, store, meta.model, [&](const std::string& key) { return skipped.count(key); });
  if (!other_channels) return account;
  Shape file_shape;
  const std::vector<float> w = read_weights_tensor(path, stem, &file_shape);
  const Tensor param = store.param(ends.stem);
  CONVNET_CHECK(file_shape.rank() == 4 && file_shape[0] == param.shape()[0] &&
                    file_shape[2] == param.shape()[2] && file_shape[3] == param.shape()[3],
                path, ": key ", stem, " has shape ", file_shape, " in the file but ", param.shape(),
                " in the model");
  const std::vector<float> adapted = adapt_stem(w, file_shape, target.in_channels);
  std::copy(adapted.begin(), adapted.end(), param.data<float>());
  return account + "; stem " + stem + " adapted from " + std::to_string(meta.in_channels) + " to " +
         std::to_string(target.in_channels) + " input channels (" +
         (target.in_channels == 1 ? "summed" : "repeated and scaled") + ")";
}

}  // namespace convnet
