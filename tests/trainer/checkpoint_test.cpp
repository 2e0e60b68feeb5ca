#include "trainer/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/hdf5_attributes.h"
#include "core/hdf5_handle.h"
#include "models/zoo.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) { return testing::fresh_temp_dir(name); }

struct Model {
  Context context;
  ParamStore store;
  std::unique_ptr<Net> net;
  std::unique_ptr<Sgd> sgd;
  explicit Model(const std::string& name = "resnet20") {
    net = build_model(context, {.name = name}, store, Shape{1, 3, 32, 32});
    sgd = std::make_unique<Sgd>(context, SgdOptions{},
                                store.decay_segments(DecayScope::all_parameters),
                                store.num_parameters());
  }
};

WeightsMetadata resnet20_metadata() {
  WeightsMetadata metadata;
  metadata.model = "resnet20";
  metadata.num_classes = 10;
  metadata.in_channels = 3;
  return metadata;
}

// A model after one SGD step (so the momentum buffer is live) and a state.
std::string write_checkpoint(const std::string& dir, int64_t step, Model& model) {
  initialize_parameters(model.store, step);
  float* g = model.store.flat_grads().data<float>();
  for (int64_t i = 0; i < model.store.num_parameters(); ++i) g[i] = 0.001f * (i % 7);
  model.sgd->step(model.store.flat_params(), model.store.flat_grads(), 0.1);
  CheckpointState state;
  state.global_step = step;  // epoch and step_in_epoch follow from it, as the trainer writes them
  state.steps_per_epoch = 4;
  state.epoch = step / 4;
  state.step_in_epoch = step % 4;
  state.sgd_steps = model.sgd->step_count();
  state.world_size = 4;
  state.batch_size = 8;
  state.accumulate = 2;
  state.config = "model = resnet20\nlr = 0.1\n";
  state.best_top1 = 0.5;
  state.best_step = step;
  const std::string path = checkpoint_path(dir, step);
  save_checkpoint(path, resnet20_metadata(), model.store, *model.sgd, state);
  return path;
}

TEST(Checkpoint, RoundTripRestoresWeightsMomentumAndState) {
  const std::string dir = temp_dir("ckpt_roundtrip");
  Model saved;
  const std::string path = write_checkpoint(dir, 7, saved);
  EXPECT_EQ(verify_hdf5_file(path), "");
  const CheckpointState state = read_checkpoint_state(path);
  EXPECT_EQ(state.global_step, 7);
  EXPECT_EQ(state.epoch, 1);
  EXPECT_EQ(state.step_in_epoch, 3);
  EXPECT_EQ(state.world_size, 4);
  EXPECT_EQ(state.accumulate, 2);
  EXPECT_EQ(state.config, "model = resnet20\nlr = 0.1\n");
  EXPECT_FALSE(state.created.empty());
  Model loaded;
  load_checkpoint(path, loaded.store, *loaded.sgd, "resnet20");
  EXPECT_EQ(loaded.store.flat_params().to_vector(), saved.store.flat_params().to_vector());
  EXPECT_EQ(loaded.sgd->momentum_buffer().to_vector(), saved.sgd->momentum_buffer().to_vector());
  EXPECT_EQ(loaded.sgd->step_count(), 1);
  // The file is also a weights file (eval reads it).
  EXPECT_EQ(read_weights_metadata(path).model, "resnet20");
}

// Flip one byte inside the stored data of /model/fc.weight.
void flip_byte(const std::string& path) {
  haddr_t address = 0;
  hsize_t size = 0;
  {
    Hdf5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, "open");
    Hdf5Id dataset(H5Dopen2(file.get(), "model/fc.weight", H5P_DEFAULT), H5Dclose, "fc.weight");
    Hdf5Id space(H5Dget_space(dataset.get()), H5Sclose, "space");
    unsigned mask = 0;
    hsize_t offset[2];
    ASSERT_GE(H5Dget_chunk_info(dataset.get(), space.get(), 0, offset, &mask, &address, &size), 0);
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(address + size / 2);
  char c = 0;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(address + size / 2);
  f.write(&c, 1);
}

TEST(Checkpoint, FlippedByteIsDetected) {
  const std::string dir = temp_dir("ckpt_flip");
  Model saved;
  const std::string path = write_checkpoint(dir, 3, saved);
  flip_byte(path);
  EXPECT_NE(verify_hdf5_file(path).find("/model/fc.weight does not read back"), std::string::npos)
      << verify_hdf5_file(path);
  Model loaded;
  try {
    load_checkpoint(path, loaded.store, *loaded.sgd, "resnet20");
    FAIL() << "a damaged checkpoint loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc.weight failed (corrupt or truncated file)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Checkpoint, ResumeSkipsDamagedAndPartialFiles) {
  const std::string dir = temp_dir("ckpt_resume");
  Model model;
  const std::string good = write_checkpoint(dir, 10, model);
  const std::string newer = write_checkpoint(dir, 20, model);
  flip_byte(newer);
  // A write killed before its rename leaves only a temporary file.
  std::ofstream(checkpoint_path(dir, 30) + ".tmp-999") << "partial";
  // A truncated file (e.g. copied by hand from a full disk).
  fs::copy_file(good, checkpoint_path(dir, 40));
  fs::resize_file(checkpoint_path(dir, 40), fs::file_size(good) / 2);
  EXPECT_EQ(list_checkpoints(dir).size(), 3u);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(find_resumable_checkpoint(dir), good);
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warnings.find("checkpoint-000000040.h5"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("checkpoint-000000020.h5: /model/fc.weight"), std::string::npos)
      << warnings;
  EXPECT_EQ(find_resumable_checkpoint(temp_dir("ckpt_empty")), "");
}

TEST(Checkpoint, BadFilesAreNamed) {
  const std::string dir = temp_dir("ckpt_bad");
  Model model;
  const std::string path = write_checkpoint(dir, 1, model);
  Model other("resnet32");
  try {
    load_checkpoint(path, other.store, *other.sgd, "resnet32");
    FAIL() << "loaded another model's checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds weights of resnet20, not resnet32"),
              std::string::npos)
        << e.what();
  }
  const std::string weights = dir + "/weights.h5";
  save_weights(weights, resnet20_metadata(), model.store);
  EXPECT_THROW(read_checkpoint_state(weights), Error);
  {
    Hdf5Id file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose, "open");
    H5Adelete(file.get(), "checkpoint_format_version");
    write_int_attribute(file.get(), "checkpoint_format_version", 99);
  }
  try {
    read_checkpoint_state(path);
    FAIL() << "read an unsupported version";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported checkpoint format_version 99"),
              std::string::npos)
        << e.what();
  }
  const std::string cut = dir + "/cut.h5";
  fs::copy_file(weights, cut);
  fs::resize_file(cut, 1000);
  EXPECT_THROW(read_checkpoint_state(cut), Error);
}

TEST(Checkpoint, FailedWriteKeepsThePreviousFile) {
  const std::string dir = temp_dir("ckpt_failed_write");
  Model model;
  const std::string path = write_checkpoint(dir, 5, model);
  const auto before = fs::file_size(path);
  // A failure while writing (here: thrown by the extra writer, as a full
  // disk would throw from H5Dwrite) leaves the old file and no temporary.
  EXPECT_THROW(save_weights(path, resnet20_metadata(), model.store,
                            [](hid_t) { throw Error("disk full (simulated)"); }),
               Error);
  EXPECT_EQ(fs::file_size(path), before);
  EXPECT_EQ(verify_hdf5_file(path), "");
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
  try {
    write_checkpoint(dir + "/missing/deeper", 6, model);
    FAIL() << "wrote into a missing directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing/deeper/checkpoint-000000006.h5.tmp-"),
              std::string::npos)
        << e.what();
  }
}

TEST(Checkpoint, PruneKeepsNewestAndBest) {
  const std::string dir = temp_dir("ckpt_prune");
  Model model;
  for (int64_t step : {1, 2, 3, 4, 5}) write_checkpoint(dir, step, model);
  write_checkpoint(dir, 9, model);  // a later step left by another run: neither kept nor counted
  prune_checkpoints(dir, 2, 2, 5);
  EXPECT_EQ(list_checkpoints(dir),
            (std::vector<std::string>{checkpoint_path(dir, 9), checkpoint_path(dir, 5),
                                      checkpoint_path(dir, 4), checkpoint_path(dir, 2)}));
  write_latest_pointer(dir, checkpoint_path(dir, 5));
  std::ifstream latest(dir + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "checkpoint-000000005.h5");
}

}  // namespace
}  // namespace convnet
