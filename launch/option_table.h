// An options table for Boost.Program_options that also prints the resolved
// values as INI text (the format --config reads), so the configuration a run
// saves can be fed back to it. Every option has help text and a default.
#pragma once

#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/named_values.h"

namespace convnet {

// Boost.Program_options reads named enums (core/named_values.h) by name, and
// std::optional of one also as "auto" (nullopt). A bad name is an error
// naming the option and every accepted value, on the command line and in
// --config files alike.
[[noreturn]] inline void throw_unknown_name(const std::string& token, const std::string& names) {
  boost::program_options::error_with_option_name error("%canonical_option% must be " + names +
                                                       ", got '%value%'");
  error.set_substitute("value", token);
  throw error;
}

template <typename E, typename = std::enable_if_t<is_named_enum<E>::value>>
void validate(boost::any& value, const std::vector<std::string>& tokens, E*, int) {
  namespace po = boost::program_options;
  po::validators::check_first_occurrence(value);
  const std::string& token = po::validators::get_single_string(tokens);
  const std::optional<E> named = find_named<E>(token);
  if (!named) throw_unknown_name(token, accepted_names<E>());
  value = *named;
}

template <typename E, typename = std::enable_if_t<is_named_enum<E>::value>>
void validate(boost::any& value, const std::vector<std::string>& tokens, std::optional<E>*, int) {
  namespace po = boost::program_options;
  po::validators::check_first_occurrence(value);
  const std::string& token = po::validators::get_single_string(tokens);
  const std::optional<E> named = find_named<E>(token);
  if (!named && token != "auto") throw_unknown_name(token, accepted_names<E>(true));
  value = named;
}

// Parses args into vm. Prints the options and returns false for --help (the
// caller then exits 0); unknown options and bad values throw Boost's errors,
// which name the option.
// The parsed options; a stray word that is no option's value (a typo, a
// missing "--") is an error naming it, not silently ignored.
//
// Switches (options whose value is optional: `--nesterov`) also take their
// value as the next word, as every other option does: `--nesterov off`,
// `--memory-efficient on` (Boost alone would read only `--nesterov=off`).
inline std::vector<std::string> join_switch_values(
    const std::vector<std::string>& args,
    const boost::program_options::options_description& options) {
  std::vector<std::string> joined;
  for (std::size_t i = 0; i < args.size(); ++i) {
    joined.push_back(args[i]);
    const std::string& a = args[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0 || a.find('=') != std::string::npos) continue;
    const auto* option = options.find_nothrow(a.substr(2), false);
    const bool is_switch =
        option && option->semantic()->min_tokens() == 0 && option->semantic()->max_tokens() == 1;
    if (is_switch && i + 1 < args.size() && args[i + 1].compare(0, 1, "-") != 0)
      joined.back() += "=" + args[++i];
  }
  return joined;
}

inline boost::program_options::parsed_options parse_options(
    const std::vector<std::string>& args,
    const boost::program_options::options_description& options) {
  namespace po = boost::program_options;
  po::parsed_options parsed =
      po::command_line_parser(join_switch_values(args, options)).options(options).run();
  for (const std::string& word : po::collect_unrecognized(parsed.options, po::include_positional))
    throw po::error("unexpected argument '" + word + "' (options start with --)");
  return parsed;
}

inline bool parse_command_line(const std::vector<std::string>& args,
                               const boost::program_options::options_description& options,
                               boost::program_options::variables_map* vm) {
  namespace po = boost::program_options;
  po::store(parse_options(args, options), *vm);
  if (vm->count("help")) {
    std::cout << options;
    return false;
  }
  po::notify(*vm);
  return true;
}

// A value as a user writes it and as it reads back exactly: the shortest
// text that round-trips for floating point (0.1, 0.0123456789), else what
// operator<< writes (names for named enums).
template <typename T>
std::string option_text(const T& value) {
  if constexpr (std::is_floating_point_v<T>) {
    char text[64];
    const auto result = std::to_chars(text, text + sizeof text, value);
    return std::string(text, result.ptr);
  } else {
    std::ostringstream text;
    text << std::boolalpha << value;
    return text.str();
  }
}

class OptionTable {
 public:
  explicit OptionTable(const std::string& caption) : description_(caption) {}

  template <typename T>
  OptionTable& add(const char* name, T* target, const char* help) {
    description_.add_options()(
        name,
        boost::program_options::value<T>(target)->default_value(*target, option_text(*target)),
        help);
    printers_.emplace_back(name, [target] { return option_text(*target); });
    return *this;
  }
  // A switch: `--name` alone means on; `--name=off` (or false, no, 0) and
  // `name = off` in a file.
  OptionTable& add_switch(const char* name, bool* target, const char* help) {
    description_.add_options()(name,
                               boost::program_options::value<bool>(target)
                                   ->default_value(*target, *target ? "on" : "off")
                                   ->implicit_value(true, "on"),
                               help);
    printers_.emplace_back(name, [target] { return std::string(*target ? "true" : "false"); });
    return *this;
  }
  const boost::program_options::options_description& description() const { return description_; }
  boost::program_options::options_description& description() { return description_; }

  // "name = value" lines of every option in the table. A value the INI
  // reader would not read back as written (a '#' starts a comment there,
  // surrounding blanks are trimmed, a line ends at a newline) is an error
  // naming the option.
  std::string ini() const {
    std::string text;
    for (const auto& [name, print] : printers_) {
      const std::string value = print();
      const bool trimmed =
          !value.empty() && (std::isspace(static_cast<unsigned char>(value.front())) ||
                             std::isspace(static_cast<unsigned char>(value.back())));
      if (value.find_first_of("#\n\r") != std::string::npos || trimmed)
        throw boost::program_options::error(
            "--" + name + " '" + value +
            "' cannot be saved in config.ini: a value there cannot hold '#' (a comment), a line "
            "break or surrounding blanks; rename it");
      text += name + " = " + value + "\n";
    }
    return text;
  }

 private:
  boost::program_options::options_description description_;
  std::vector<std::pair<std::string, std::function<std::string()>>> printers_;
};

}  // namespace convnet
