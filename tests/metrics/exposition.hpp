// Reading what /metrics served, for assertions: the samples of the text
// exposition format by series ("name{label=\"v\"}"), and the tools the
// tests run (promtool, prometheus), found on PATH.
#pragma once

#include "tests/support/child.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>

namespace memlend::test {

inline std::map<std::string, double> samples(const std::string& exposition) {
  std::map<std::string, double> out;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.front() == '#') continue;
    auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

// Where `name` is on PATH, or empty. The tools come from Debian packages
// listed in packaging/test-packages.txt.
inline std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// `promtool check metrics` on a scrape: Prometheus's own parser and linter.
// Status 127 when promtool is missing.
inline ProcessResult promtool_check_metrics(const std::string& exposition) {
  std::string promtool = find_program("promtool");
  if (promtool.empty()) {
    ProcessResult missing;
    missing.status = 127;
    missing.err = "promtool is not on PATH: install the packages of packaging/test-packages.txt";
    return missing;
  }
  std::string dir = make_temp_dir("promtool");
  std::ofstream(dir + "/scrape.txt") << exposition;
  auto r = run_process({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, dir + "/scrape.txt"}, 60);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return r;
}

}  // namespace memlend::test
