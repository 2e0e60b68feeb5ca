#include "trainer/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include "core/durable_file.h"
#include "core/error.h"
#include "core/hdf5_attributes.h"
#include "core/hdf5_file.h"

namespace convnet {
namespace {

namespace fs = std::filesystem;

void write_double_attribute(hid_t location, const char* name, double value) {
  write_double_array_attribute(location, name, {value});
}

double read_double_attribute(hid_t location, const std::string& path, const char* name) {
  const std::vector<double> values = read_double_array_attribute(location, path, name);
  CONVNET_CHECK(values.size() == 1, path, ": attribute ", name, " must hold one value");
  return values[0];
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

// A flat float32 dataset NAME (n values) in `group`.
void write_flat(hid_t group, const char* name, const float* values, int64_t n,
                const std::string& path, const std::string& what) {
  Hdf5Id dataset =
      create_checksummed_dataset(group, name, H5T_IEEE_F32LE, Shape{n}, path + " (temporary)");
  CONVNET_CHECK(
      H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) >= 0,
      "writing ", what, " to ", path, " (disk full?)");
}

// Reads the flat float32 dataset `name` of n values into out.
void read_flat(hid_t file, const std::string& path, const std::string& name, int64_t n,
               float* out) {
  CONVNET_CHECK(H5Lexists(file, name.substr(0, name.find('/')).c_str(), H5P_DEFAULT) > 0 &&
                    H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0,
                path, ": missing /", name);
  Hdf5Id dataset =
      Hdf5Id::opened(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, path, "/" + name);
  Hdf5Id space(H5Dget_space(dataset.get()), H5Sclose, "flat dataset shape");
  CONVNET_CHECK(H5Sget_simple_extent_npoints(space.get()) == n, path, ": /", name, " has ",
                H5Sget_simple_extent_npoints(space.get()), " elements, the model ", n);
  CONVNET_CHECK(H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0,
                path, ": reading /", name, " failed (checksum mismatch: damaged file)");
}

void write_ema(hid_t file, const EmaValues& ema, const std::string& path) {
  Hdf5Id group(H5Gcreate2(file, "ema", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
               "creating /ema");
  write_flat(group.get(), "params", ema.params.data(), int64_t(ema.params.size()), path,
             "/ema/params");
  if (!ema.buffers.empty())
    write_flat(group.get(), "buffers", ema.buffers.data(), int64_t(ema.buffers.size()), path,
               "/ema/buffers");
  write_int_attribute(file, "ema_updates", ema.updates);
}

}  // namespace

void save_checkpoint(const std::string& path, const WeightsMetadata& metadata,
                     const ParamStore& store, const Sgd& sgd, const CheckpointState& state,
                     const EmaValues* ema) {
  save_weights(path, metadata, store, [&](hid_t file) {
    if (ema) write_ema(file, *ema, path);
    const std::string temp = path + " (temporary)";
    Hdf5Id group(H5Gcreate2(file, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                 "creating /optimizer");
    if (sgd.num_params() > 0) {
      Hdf5Id momentum = create_checksummed_dataset(group.get(), "momentum", H5T_IEEE_F32LE,
                                                   Shape{sgd.num_params()}, temp);
      // --momentum 0 keeps no buffer: its momentum is zeros.
      std::vector<float> zeros;
      if (!sgd.momentum_buffer().defined()) zeros.assign(std::size_t(sgd.num_params()), 0.0f);
      const float* values = zeros.empty() ? sgd.momentum_buffer().data<float>() : zeros.data();
      CONVNET_CHECK(
          H5Dwrite(momentum.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) >= 0,
          "writing /optimizer/momentum to ", path, " (disk full?)");
    }
    write_string_attribute(file, "kind", "checkpoint");
    write_int_attribute(file, "checkpoint_format_version", kCheckpointFormatVersion);
    write_int_attribute(file, "global_step", state.global_step);
    write_int_attribute(file, "epoch", state.epoch);
    write_int_attribute(file, "step_in_epoch", state.step_in_epoch);
    write_int_attribute(file, "samples_seen", state.samples_seen);
    write_int_attribute(file, "sgd_steps", state.sgd_steps);
    write_int_attribute(file, "world_size", state.world_size);
    write_int_attribute(file, "batch_size", state.batch_size);
    write_int_attribute(file, "accumulate", state.accumulate);
    write_int_attribute(file, "seed", state.seed);
    write_int_attribute(file, "steps_per_epoch", state.steps_per_epoch);
    write_string_attribute(file, "config", state.config);
    write_double_attribute(file, "val_top1", state.val_top1);
    write_double_attribute(file, "val_loss", state.val_loss);
    write_double_attribute(file, "best_top1", state.best_top1);
    write_int_attribute(file, "best_step", state.best_step);
    write_double_attribute(file, "loss_scale", state.loss_scale);
    write_int_attribute(file, "loss_scale_good_steps", state.loss_scale_good_steps);
    write_int_attribute(file, "skipped_steps", state.skipped_steps);
    write_string_attribute(file, "created", utc_now());
    write_string_attribute(file, "convnet_version", CONVNET_VERSION);
  });
}

namespace {

// Fields a real run cannot have written: damage, named.
void check_checkpoint_state(const std::string& path, const CheckpointState& s) {
  const auto check = [&](bool ok, const char* what, int64_t value) {
    CONVNET_CHECK(ok, path, ": damaged training state: ", what, " is ", value);
  };
  check(s.world_size >= 1, "world_size", s.world_size);
  check(s.batch_size >= 1, "batch_size", s.batch_size);
  check(s.accumulate >= 1, "accumulate", s.accumulate);
  check(s.steps_per_epoch >= 1, "steps_per_epoch", s.steps_per_epoch);
  check(s.global_step >= 0, "global_step", s.global_step);
  check(s.epoch >= 0, "epoch", s.epoch);
  check(s.step_in_epoch >= 0 && s.step_in_epoch < s.steps_per_epoch, "step_in_epoch",
        s.step_in_epoch);
  check(s.samples_seen >= 0, "samples_seen", s.samples_seen);
  check(s.sgd_steps >= 0 && s.sgd_steps <= s.global_step, "sgd_steps", s.sgd_steps);
  // The trainer writes epoch and step_in_epoch from global_step (done /
  // steps_per_epoch, done % steps_per_epoch).
  check(s.epoch <= s.global_step / s.steps_per_epoch &&
            s.epoch * s.steps_per_epoch + s.step_in_epoch == s.global_step,
        "epoch", s.epoch);
}

}  // namespace

CheckpointState read_checkpoint_state(const std::string& path) {
  Hdf5Id file = open_hdf5_read_only(path);
  const hid_t f = file.get();
  CONVNET_CHECK(has_attribute(f, "kind") && read_string_attribute(f, path, "kind") == "checkpoint",
                path, ": a weights file without training state, not a checkpoint");
  const int64_t version = read_int_attribute(f, path, "checkpoint_format_version");
  CONVNET_CHECK(version >= 1 && version <= kCheckpointFormatVersion, path,
                ": unsupported checkpoint format_version ", version, " (this convnet reads 1 to ",
                kCheckpointFormatVersion, ")");
  CheckpointState s;
  s.global_step = read_int_attribute(f, path, "global_step");
  s.epoch = read_int_attribute(f, path, "epoch");
  s.step_in_epoch = read_int_attribute(f, path, "step_in_epoch");
  s.samples_seen = read_int_attribute(f, path, "samples_seen");
  s.sgd_steps = read_int_attribute(f, path, "sgd_steps");
  s.world_size = read_int_attribute(f, path, "world_size");
  s.batch_size = read_int_attribute(f, path, "batch_size");
  s.accumulate = read_int_attribute(f, path, "accumulate");
  s.seed = read_int_attribute(f, path, "seed");
  s.steps_per_epoch = read_int_attribute(f, path, "steps_per_epoch");
  s.config = read_string_attribute(f, path, "config");
  s.val_top1 = read_double_attribute(f, path, "val_top1");
  s.val_loss = read_double_attribute(f, path, "val_loss");
  s.best_top1 = read_double_attribute(f, path, "best_top1");
  s.best_step = read_int_attribute(f, path, "best_step");
  if (has_attribute(f, "loss_scale")) {  // written since mixed precision
    s.loss_scale = read_double_attribute(f, path, "loss_scale");
    s.loss_scale_good_steps = read_int_attribute(f, path, "loss_scale_good_steps");
    s.skipped_steps = read_int_attribute(f, path, "skipped_steps");
  }
  s.created = read_string_attribute(f, path, "created");
  s.convnet_version = read_string_attribute(f, path, "convnet_version");
  check_checkpoint_state(path, s);
  return s;
}

bool read_checkpoint_ema(const std::string& path, const ParamStore& store, EmaValues* ema) {
  Hdf5Id file = open_hdf5_read_only(path);
  if (!has_attribute(file.get(), "ema_updates")) return false;
  ema->updates = read_int_attribute(file.get(), path, "ema_updates");
  CONVNET_CHECK(ema->updates >= 0, path, ": damaged checkpoint: ema_updates ", ema->updates);
  ema->params.resize(static_cast<std::size_t>(store.flat_size()));
  read_flat(file.get(), path, "ema/params", store.flat_size(), ema->params.data());
  ema->buffers.resize(static_cast<std::size_t>(store.flat_buffer_size()));
  if (store.flat_buffer_size() > 0)
    read_flat(file.get(), path, "ema/buffers", store.flat_buffer_size(), ema->buffers.data());
  for (float v : ema->params)
    CONVNET_CHECK(std::isfinite(v), path, ": /ema/params holds non-finite values");
  return true;
}

void load_checkpoint(const std::string& path, ParamStore& store, Sgd& sgd,
                     const std::string& expected_model) {
  const CheckpointState state = read_checkpoint_state(path);
  load_weights(path, store, expected_model);
  Hdf5Id file = open_hdf5_read_only(path);
  if (sgd.num_params() > 0 && sgd.momentum_buffer().defined()) {  // none with --momentum 0
    CONVNET_CHECK(
        has_link(file.get(), path, "optimizer") && has_link(file.get(), path, "optimizer/momentum"),
        path, ": missing /optimizer/momentum");
    Hdf5Id momentum = Hdf5Id::opened(H5Dopen2(file.get(), "optimizer/momentum", H5P_DEFAULT),
                                     H5Dclose, path, "/optimizer/momentum");
    Hdf5Id space(H5Dget_space(momentum.get()), H5Sclose, "momentum shape");
    CONVNET_CHECK(H5Sget_simple_extent_npoints(space.get()) == sgd.num_params(), path,
                  ": /optimizer/momentum has ", H5Sget_simple_extent_npoints(space.get()),
                  " elements, the model ", sgd.num_params());
    CONVNET_CHECK(H5Dread(momentum.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                          sgd.mutable_momentum_buffer().data<float>()) >= 0,
                  path, ": reading /optimizer/momentum failed (checksum mismatch: damaged file)");
  }
  sgd.set_step_count(state.sgd_steps);
}

std::string verify_hdf5_file(const std::string& path) {
  try {
    Hdf5Id file = open_hdf5_read_only(path);
    std::string error;
    struct Visit {
      std::string* error;
      hid_t file;
    } visit{&error, file.get()};
    const herr_t status = H5Ovisit(
        file.get(), H5_INDEX_NAME, H5_ITER_INC,
        [](hid_t root, const char* name, const H5O_info_t* info, void* data) -> herr_t {
          auto* v = static_cast<Visit*>(data);
          if (info->type != H5O_TYPE_DATASET) return 0;
          const hid_t dataset = H5Dopen2(root, name, H5P_DEFAULT);
          if (dataset < 0) {
            *v->error = std::string("cannot open /") + name;
            return 1;
          }
          const hid_t type = H5Dget_type(dataset);
          const hid_t space = H5Dget_space(dataset);
          const std::size_t bytes =
              H5Tget_size(type) * std::max<hssize_t>(1, H5Sget_simple_extent_npoints(space));
          std::vector<unsigned char> buffer(bytes);
          const herr_t read = H5Dread(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data());
          H5Sclose(space);
          H5Tclose(type);
          H5Dclose(dataset);
          if (read < 0) {
            *v->error = std::string("/") + name + " does not read back (checksum mismatch)";
            return 1;
          }
          return 0;
        },
        &visit);
    if (!error.empty()) return path + ": " + error;
    if (status < 0)
      return path + ": damaged file: its HDF5 metadata does not read back (a metadata checksum " +
             "mismatch or a corrupt header)";
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "checkpoint-%09ld.h5", long(step));
  return (fs::path(run_dir) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::string> paths;
  std::error_code error;
  if (!fs::is_directory(run_dir, error)) return paths;
  static const std::regex pattern("checkpoint-[0-9]+\\.h5");
  // Every entry named like a checkpoint, whatever it is: a directory or FIFO
  // in its place is a damaged checkpoint, not an absent one.
  for (const auto& entry : fs::directory_iterator(run_dir, error))
    if (std::regex_match(entry.path().filename().string(), pattern))
      paths.push_back(entry.path().string());
  std::sort(paths.rbegin(), paths.rend());  // zero-padded steps: lexical = numeric
  return paths;
}

std::string find_resumable_checkpoint(const std::string& run_dir) {
  for (const std::string& path : list_checkpoints(run_dir)) {
    std::string problem = verify_hdf5_file(path);
    if (problem.empty()) {
      try {
        read_checkpoint_state(path);
        return path;
      } catch (const std::exception& e) {
        problem = e.what();
      }
    }
    std::fprintf(stderr, "warning: skipping damaged checkpoint: %s\n", problem.c_str());
  }
  return "";
}

void write_latest_pointer(const std::string& run_dir, const std::string& path) {
  const std::string pointer = (fs::path(run_dir) / "latest").string();
  const std::string temp = pointer + ".tmp-" + std::to_string(getpid());
  {
    std::ofstream out(temp);
    out << fs::path(path).filename().string() << "\n";
    out.flush();
    CONVNET_CHECK(out.good(), "writing ", temp, " (disk full?)");
  }
  fsync_and_rename(temp, pointer);
}

void prune_checkpoints(const std::string& run_dir, int64_t keep, int64_t best_step,
                       int64_t current_step) {
  const std::string best = best_step >= 0 ? checkpoint_path(run_dir, best_step) : "";
  const std::string current = checkpoint_path(run_dir, current_step);
  // Only this run's history counts: files of later steps (left by a run this
  // one resumed from an older checkpoint) are neither counted nor deleted.
  std::vector<std::string> paths;
  for (const std::string& path : list_checkpoints(run_dir))
    if (path <= current) paths.push_back(path);  // zero-padded: lexical = numeric
  for (std::size_t i = static_cast<std::size_t>(std::max<int64_t>(keep, 1)); i < paths.size(); ++i)
    if (paths[i] != best && paths[i] != current) std::remove(paths[i].c_str());
}

}  // namespace convnet
