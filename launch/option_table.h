// An options table for Boost.Program_options that also prints the resolved
// values as INI text (the format --config reads), so the configuration a run
// saves can be fed back to it. Every option has help text and a default.
#pragma once

#include <boost/program_options.hpp>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
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
inline boost::program_options::parsed_options parse_options(
    const std::vector<std::string>& args,
    const boost::program_options::options_description& options) {
  namespace po = boost::program_options;
  po::parsed_options parsed = po::command_line_parser(args).options(options).run();
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

class OptionTable {
 public:
  explicit OptionTable(const std::string& caption) : description_(caption) {}

  template <typename T>
  OptionTable& add(const char* name, T* target, const char* help) {
    description_.add_options()(
        name, boost::program_options::value<T>(target)->default_value(*target), help);
    printers_.emplace_back(name, [target] {
      std::ostringstream text;
      text << std::boolalpha << *target;
      return text.str();
    });
    return *this;
  }
  // A switch: `--name` alone means true; `--name=false` or `name = false` in a file.
  OptionTable& add_switch(const char* name, bool* target, const char* help) {
    description_.add_options()(
        name,
        boost::program_options::value<bool>(target)->default_value(*target)->implicit_value(true),
        help);
    printers_.emplace_back(name, [target] { return std::string(*target ? "true" : "false"); });
    return *this;
  }
  const boost::program_options::options_description& description() const { return description_; }
  boost::program_options::options_description& description() { return description_; }

  // "name = value" lines of every option in the table.
  std::string ini() const {
    std::string text;
    for (const auto& [name, print] : printers_) text += name + " = " + print() + "\n";
    return text;
  }

 private:
  boost::program_options::options_description description_;
  std::vector<std::pair<std::string, std::function<std::string()>>> printers_;
};

}  // namespace convnet
