#include "cli/cli.hpp"

#include <iostream>

#ifndef MEMLEND_VERSION
#define MEMLEND_VERSION "0.0.0"
#endif

namespace memlend::cli {

Action add_version(CLI::App& app) {
  app.add_subcommand("version", "Print the version of memlend and exit");
  return [] {
    std::cout << "memlend " << MEMLEND_VERSION << '\n';
    return exit_ok;
  };
}

}  // namespace memlend::cli
