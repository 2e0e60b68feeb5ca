#include "core/hdf5_handle.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace convnet {
namespace {

TEST(Hdf5Id, ClosesOnceAndMoves) {
  const std::string path =
      ::testing::TempDir() + "/hdf5_handle_test_" + std::to_string(getpid()) + ".h5";
  {
    Hdf5Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                "creating the test file");
    ASSERT_TRUE(file);
    const hid_t raw = file.get();
    Hdf5Id moved = std::move(file);
    EXPECT_FALSE(file);
    EXPECT_EQ(moved.get(), raw);
    EXPECT_GT(H5Iis_valid(raw), 0);
    moved.reset();
    EXPECT_LE(H5Iis_valid(raw), 0) << "reset closes the file";
  }
  std::remove(path.c_str());
}

TEST(Hdf5Id, FailedCallThrowsNamingIt) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // keep HDF5's own stack trace off the test log
  try {
    Hdf5Id file(H5Fopen("/nonexistent/dir/x.h5", H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                "opening /nonexistent/dir/x.h5");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("opening /nonexistent/dir/x.h5"), std::string::npos);
  }
}

}  // namespace
}  // namespace convnet
