#include "tests/testing/test_util.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <sstream>

namespace convnet::testing {

ref::Array random_array(const Shape& shape, std::mt19937& rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  ref::Array a(shape);
  for (auto& v : a.data) v = dist(rng);
  return a;
}

double dot(const ref::Array& a, const ref::Array& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a[i] * b[i];
  return s;
}

::testing::AssertionResult all_close(const ref::Array& actual, const ref::Array& expected,
                                     double rtol, double atol) {
  if (actual.shape != expected.shape)
    return ::testing::AssertionFailure()
           << "shape " << actual.shape << " differs from expected " << expected.shape;
  int64_t worst = -1;
  double worst_excess = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const double bound = atol + rtol * std::abs(expected[i]);
    const double err = std::abs(actual[i] - expected[i]);
    if (!(err <= bound) && (worst < 0 || err - bound > worst_excess || std::isnan(err))) {
      worst = i;
      worst_excess = err - bound;
    }
  }
  if (worst < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << worst << " of " << actual.numel() << " (shape " << actual.shape
         << "): actual " << actual[worst] << ", expected " << expected[worst] << ", |diff| "
         << std::abs(actual[worst] - expected[worst]) << " > atol " << atol << " + rtol " << rtol
         << " * |expected|";
}

::testing::AssertionResult all_close(const Tensor& actual, const ref::Array& expected, double rtol,
                                     double atol) {
  return all_close(ref::from_tensor(actual), expected, rtol, atol);
}

::testing::AssertionResult gradient_matches(ref::Array& x, const std::function<double()>& loss,
                                            const ref::Array& analytic, double eps, double rtol,
                                            double atol) {
  if (analytic.shape != x.shape)
    return ::testing::AssertionFailure()
           << "gradient shape " << analytic.shape << " differs from input shape " << x.shape;
  ref::Array numeric(x.shape);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double up = loss();
    x[i] = saved - eps;
    const double down = loss();
    x[i] = saved;
    numeric[i] = (up - down) / (2 * eps);
  }
  return all_close(analytic, numeric, rtol, atol);
}

Tensor to_tensor(Context& context, const ref::Array& array, Layout layout) {
  Tensor plain = ref::to_tensor(array, context.allocator());
  if (layout == Layout::nchw) return plain;
  Tensor t = Tensor::empty(array.shape, context.allocator(), DType::f32, layout);
  t.copy_from(plain);
  return t;
}

Tensor zeros(Context& context, const Shape& shape, Layout layout) {
  return Tensor::zeros(shape, context.allocator(), DType::f32, layout);
}

std::string fresh_temp_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace convnet::testing
