// Subcommands register themselves here; main.cpp only parses and dispatches.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace msam::cli {

// `setup` adds the subcommand's options to `app` and returns the action to run.
using Setup = std::function<std::function<int()>(CLI::App& app)>;

struct Command {
  std::string name, description;
  Setup setup;
};

std::vector<Command>& registry();

struct Register {
  Register(std::string name, std::string description, Setup setup) {
    registry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

}  // namespace msam::cli
