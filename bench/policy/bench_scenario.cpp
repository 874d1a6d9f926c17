// How long `plan` takes to read a cluster before deciding: parse_scenario
// (nlohmann's SAX parser building the document, duplicate keys checked per
// object, then every key checked) against, in the same run, plain
// nlohmann::json::parse of the same text (no duplicate check, no checks at
// all: the floor) and the callback parser the duplicate check used to ride
// on (quadratic: it rescans the enclosing array at the end of every object).
// Then the plan of the parsed scenario, for parse + plan.
//
//   bench_scenario [--hosts N]... [--repeat N] [--callback-up-to N]
//
// With no sizes: 10,000, 100,000 and 1,000,000 hosts, one VM on each, every
// tenth VM short of memory. Times are medians of --repeat runs (default 3).
#include "policy/cluster.hpp"
#include "scenario/scenario.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

// Hosts of 256 GiB / 64 GHz, each with one VM; every tenth VM wants 288 GiB
// (short by 32 GiB), the others 128 GiB.
std::string generate(long hosts) {
  std::string text = R"({ "settings": { "placement": "best_fit" }, "hosts": [)";
  char line[256];
  for (long h = 0; h < hosts; ++h) {
    std::snprintf(line, sizeof line, R"(%s{ "name": "host%ld", "memory_mib": 262144, "cpu_mhz": 64000 })",
                  h ? ",\n  " : "\n  ", h);
    text += line;
  }
  text += "],\n \"vms\": [";
  for (long h = 0; h < hosts; ++h) {
    std::snprintf(line, sizeof line, R"(%s{ "name": "vm%ld", "host": "host%ld", "memory_mib": %d, "cpu_mhz": 8000 })",
                  h ? ",\n  " : "\n  ", h, h, h % 10 == 9 ? 294912 : 131072);
    text += line;
  }
  return text + "] }\n";
}

double median_ms(int repeat, const std::function<void()>& f) {
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    auto t0 = Clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The duplicate check as it was: nlohmann's callback parser with a key set
// per open object.
json parse_with_callback(const std::string& text) {
  std::vector<std::set<std::string>> open;
  auto watch = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open.emplace_back();
    if (event == json::parse_event_t::object_end && !open.empty()) open.pop_back();
    if (event == json::parse_event_t::key && !open.empty() && !open.back().insert(parsed.get<std::string>()).second)
      std::abort();
    return true;
  };
  return json::parse(text, watch);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> sizes;
  int repeat = 3;
  long callback_up_to = 100000;
  for (int i = 1; i < argc; ++i) {
    auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_scenario: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return std::atol(argv[++i]);
    };
    if (!std::strcmp(argv[i], "--hosts")) sizes.push_back(value());
    else if (!std::strcmp(argv[i], "--repeat")) repeat = static_cast<int>(value());
    else if (!std::strcmp(argv[i], "--callback-up-to")) callback_up_to = value();
    else {
      std::fprintf(stderr, "usage: bench_scenario [--hosts N]... [--repeat N] [--callback-up-to N]\n");
      return 2;
    }
  }
  if (sizes.empty()) sizes = {10000, 100000, 1000000};
  if (repeat < 1) repeat = 1;

  std::printf("%10s %9s | %14s %14s %14s | %10s %14s\n", "hosts", "text MiB", "parse_scenario", "json::parse",
              "callback (old)", "plan", "parse + plan");
  for (long hosts : sizes) {
    std::string text = generate(hosts);
    std::size_t planned = 0;
    memlend::Expected<memlend::policy::Scenario> sc = memlend::Error{""};
    double parse = median_ms(repeat, [&] { sc = memlend::platform::parse_scenario(text, "bench"); });
    if (!sc) {
      std::fprintf(stderr, "bench_scenario: %s\n", sc.error().message.c_str());
      return 1;
    }
    std::size_t parsed = 0;
    double plain = median_ms(repeat, [&] { parsed += json::parse(text).size(); });
    char callback[32] = "-";
    if (hosts <= callback_up_to)
      std::snprintf(callback, sizeof callback, "%.0f ms",
                    median_ms(repeat, [&] { parsed += parse_with_callback(text).size(); }));
    double plan = median_ms(repeat, [&] {
      memlend::policy::Cluster cluster(*sc);
      planned = cluster.plan().size();
    });
    if (planned != static_cast<std::size_t>(hosts) || parsed == 0) {
      std::fprintf(stderr, "bench_scenario: %zu decisions for %ld VMs\n", planned, hosts);
      return 1;
    }
    std::printf("%10ld %9.1f | %11.0f ms %11.0f ms %14s | %7.0f ms %11.0f ms\n", hosts,
                static_cast<double>(text.size()) / (1 << 20), parse, plain, callback, plan, parse + plan);
    std::fflush(stdout);
  }
  return 0;
}
