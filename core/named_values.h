// Names of an enum's values, one table per enum: options are parsed with it
// at the command-line boundary (launch/option_table.h), and files, messages
// and the saved configuration print with it.
//
// An enum opts in by specializing NamedValues next to its definition:
//   template <> struct NamedValues<Backend> {
//     static constexpr std::pair<Backend, const char*> table[] = {
//         {Backend::cpu, "cpu"}, {Backend::cuda, "cuda"}};
//   };
// std::optional<E> of such an enum is named too: "auto" is std::nullopt
// (the program chooses), e.g. `std::optional<Layout> layout; // --layout auto`.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace convnet {

template <typename E>
struct NamedValues;  // specialized for each named enum

template <typename E, typename = void>
struct is_named_enum : std::false_type {};
template <typename E>
struct is_named_enum<E, std::void_t<decltype(NamedValues<E>::table)>> : std::true_type {};

// The name of `value`; "?" for a value the table lacks (a bug).
template <typename E>
const char* name_of(E value) {
  for (const auto& [v, name] : NamedValues<E>::table)
    if (v == value) return name;
  return "?";
}
template <typename E>
std::string name_of(const std::optional<E>& value) {
  return value ? name_of(*value) : "auto";
}

// The value named `name`, or nullopt.
template <typename E>
std::optional<E> find_named(std::string_view name) {
  for (const auto& [v, n] : NamedValues<E>::table)
    if (name == n) return v;
  return std::nullopt;
}

// "a, b or c": the accepted names, for messages.
template <typename E>
std::string accepted_names(bool with_auto = false) {
  std::string text = with_auto ? "auto" : "";
  const auto& table = NamedValues<E>::table;
  const std::size_t count = std::size(table);
  for (std::size_t i = 0; i < count; ++i) {
    const bool last = i + 1 == count;
    if (!text.empty()) text += last ? " or " : ", ";
    text += table[i].second;
  }
  return text;
}

// The value named `name`; throws "<option> must be a, b or c, got 'x'".
template <typename E>
E parse_named(std::string_view name, std::string_view option) {
  const std::optional<E> value = find_named<E>(name);
  CONVNET_CHECK(value.has_value(), option, " must be ", accepted_names<E>(), ", got '", name, "'");
  return *value;
}

template <typename E, typename = std::enable_if_t<is_named_enum<E>::value>>
std::ostream& operator<<(std::ostream& out, E value) {
  return out << name_of(value);
}
template <typename E, typename = std::enable_if_t<is_named_enum<E>::value>>
std::ostream& operator<<(std::ostream& out, const std::optional<E>& value) {
  return out << name_of(value);
}

}  // namespace convnet
