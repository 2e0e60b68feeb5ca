// Helpers shared by the test suite: random data, closeness checks that report
// the worst element, and a finite-difference gradient checker for the
// double-precision reference layers.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>

#include "core/context.h"
#include "core/error.h"
#include "core/tensor.h"
#include "layers/reference.h"

namespace convnet::testing {

// A new empty directory under GoogleTest's temporary directory, named after
// `name` and the process id (parallel test processes do not collide).
std::string fresh_temp_dir(const std::string& name);

// Passes when fn() throws convnet::Error with `expected` in its message;
// otherwise reports the message it threw, or that it threw none.
template <typename Fn>
::testing::AssertionResult throws_error_with(Fn&& fn, const std::string& expected) {
  try {
    fn();
  } catch (const Error& e) {
    if (std::string(e.what()).find(expected) != std::string::npos)
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "error \"" << e.what() << "\" lacks \"" << expected << "\"";
  }
  return ::testing::AssertionFailure() << "no error; expected one with \"" << expected << "\"";
}

// Uniform values in [lo, hi).
ref::Array random_array(const Shape& shape, std::mt19937& rng, double lo = -1.0, double hi = 1.0);
// Sum of elementwise products.
double dot(const ref::Array& a, const ref::Array& b);

// Passes when |actual - expected| <= atol + rtol * |expected| for every element;
// otherwise reports the worst element, its index and the bound.
::testing::AssertionResult all_close(const ref::Array& actual, const ref::Array& expected,
                                     double rtol, double atol);
::testing::AssertionResult all_close(const Tensor& actual, const ref::Array& expected, double rtol,
                                     double atol);

// Checks `analytic`, the gradient of the scalar `loss()` with respect to `x`,
// against central differences (loss(x + eps) - loss(x - eps)) / (2 eps),
// perturbing every element of `x` in place (and restoring it).
//
// Default bounds, for double precision: with eps = 1e-5 the truncation error
// is ~eps^2 * |third derivative| ~ 1e-10, and the rounding error of L is
// ~1e-16 * sum|terms| (sums of up to ~1e3 unit terms here) divided by eps,
// ~1e-8. A bound of 1e-6 relative plus 1e-7 absolute sits well above both and
// far below the size of any real indexing or formula error (1e-2 and up).
::testing::AssertionResult gradient_matches(ref::Array& x, const std::function<double()>& loss,
                                            const ref::Array& analytic, double eps = 1e-5,
                                            double rtol = 1e-6, double atol = 1e-7);

// Tensor of the array's values, from the context's allocator, in a layout.
Tensor to_tensor(Context& context, const ref::Array& array, Layout layout = Layout::nchw);
// Zero-filled tensor.
Tensor zeros(Context& context, const Shape& shape, Layout layout = Layout::nchw);

}  // namespace convnet::testing
