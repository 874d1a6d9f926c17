// The failpoints of the test binary memlend-failpoints, from the environment:
//   MEMLEND_FAILPOINTS=NAME=every:N[,NAME=every:N...]
// fires NAME at every Nth pass through it, counted over the whole process.
// A spec this cannot read stops the process at its first failpoint, with the
// reason, rather than leave a test to wonder why nothing failed.
#include "core/failpoint.hpp"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

namespace memlend::failpoint {
namespace {

struct Point {
  std::uint64_t every = 0;
  std::atomic<std::uint64_t> passes{0};
};

struct Points {
  std::map<std::string, std::unique_ptr<Point>> by_name;
  std::string error;
};

Points read_spec() {
  Points p;
  const char* env = std::getenv("MEMLEND_FAILPOINTS");
  if (!env) return p;
  std::istringstream in(env);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto eq = item.find('=');
    std::string name = item.substr(0, eq);
    std::string how = eq == std::string::npos ? "" : item.substr(eq + 1);
    char* end = nullptr;
    unsigned long long n = how.rfind("every:", 0) == 0 ? std::strtoull(how.c_str() + 6, &end, 10) : 0;
    if (name.empty() || n == 0 || !end || *end) {
      p.error = "MEMLEND_FAILPOINTS: '" + item + "' is not NAME=every:N with N > 0";
      return p;
    }
    auto point = std::make_unique<Point>();
    point->every = n;
    p.by_name[name] = std::move(point);
  }
  return p;
}

const Points& points() {
  static const Points p = read_spec();
  return p;
}

}  // namespace

bool fires(const char* name) {
  const Points& p = points();
  if (!p.error.empty()) {
    std::fprintf(stderr, "%s\n", p.error.c_str());
    std::_Exit(2);
  }
  auto it = p.by_name.find(name);
  if (it == p.by_name.end()) return false;
  return (it->second->passes.fetch_add(1) + 1) % it->second->every == 0;
}

}  // namespace memlend::failpoint
