// The convnet subcommands; each parses its own options (Boost.Program_options)
// and returns the process exit code.
#pragma once

#include <iostream>
#include <string>
#include <vector>

namespace convnet {

int models_command(const std::vector<std::string>& args);
int bench_command(const std::vector<std::string>& args);
int convert_command(const std::vector<std::string>& args);
int bench_data_command(const std::vector<std::string>& args);
int train_command(const std::vector<std::string>& args);
int eval_command(const std::vector<std::string>& args);
int predict_command(const std::vector<std::string>& args);
int inspect_command(const std::vector<std::string>& args);

}  // namespace convnet
