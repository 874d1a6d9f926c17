#define BOOST_TEST_MODULE metrics_scrape
#include <boost/test/unit_test.hpp>

// Scrapes a separate process serving memlend's metrics: first with a plain
// HTTP GET (values, then promtool), then with a real Prometheus server on
// loopback, queried through its HTTP API.
//
// The process is the metrics probe (the Registry and exposer memlend uses,
// filled from the scenario's plan). Once `memlend run --metrics ADDR` serves
// metrics, target() below is the one place to change: return
//   {MEMLEND_BINARY, "run", "--scenario", scenario, "--metrics", address,
//    "--speed", "1", "--for", "1h", "--quiet"}
// and the same assertions hold once run's first decisions are carried out
// (wait_for_series already waits for them).

#include "tests/metrics/exposition.hpp"
#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"
#include "tests/support/process.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

using namespace memlend::test;

namespace {

const std::string source_dir = MEMLEND_SOURCE_DIR;
const std::string fig2 = source_dir + "/examples/fig2.json";
const std::string alert_rules = source_dir + "/packaging/memlend-alerts.yml";
const std::string dashboard = source_dir + "/packaging/memlend-dashboard.json";
constexpr double mib = 1024.0 * 1024.0;

std::vector<std::string> target(const std::string& address, const std::string& scenario) {
  return {METRICS_PROBE, "--metrics", address, "--scenario", scenario};
}

struct TempDir {
  std::string path = make_temp_dir("scrape");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Polls until `ready` says yes or the child exits; bounded, because a server
// that never comes up must fail the test, not hang it. Only for waiting on
// processes starting, never to assert on timing.
template <class Ready>
bool wait_until(ChildProcess& child, double timeout_s, Ready ready) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    if (!child.running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The fig2 scenario's plan: B lends VM2 on A 48 GiB.
void expect_fig2_values(const std::map<std::string, double>& s) {
  auto at = [&](const std::string& series) {
    auto it = s.find(series);
    BOOST_TEST_REQUIRE((it != s.end()), "the scrape holds " << series);
    return it->second;
  };
  for (const char* h : {"A", "B", "N"}) BOOST_TEST(at("memlend_host_up{host=\"" + std::string(h) + "\"}") == 1);
  BOOST_TEST(at("memlend_host_memory_capacity_bytes{host=\"A\"}") == 16384 * mib);
  BOOST_TEST(at("memlend_host_memory_capacity_bytes{host=\"B\"}") == 131072 * mib);
  BOOST_TEST(at("memlend_host_cpu_capacity_hertz{host=\"A\"}") == 32000e6);
  BOOST_TEST(at("memlend_host_memory_used_bytes{host=\"A\"}") == 16384 * mib);
  BOOST_TEST(at("memlend_host_memory_lent_bytes{host=\"B\"}") == 49152 * mib);
  BOOST_TEST(at("memlend_host_memory_lent_bytes{host=\"N\"}") == 0);
  BOOST_TEST(at("memlend_host_memory_borrowed_bytes{host=\"A\"}") == 49152 * mib);
  BOOST_TEST(at("memlend_leases_active{host=\"B\"}") == 1);
  BOOST_TEST(at("memlend_lease_grants_total{transport=\"rdma\"}") == 1);
  BOOST_TEST(at("memlend_decisions_total{kind=\"remote_memory\"}") == 1);
  BOOST_TEST(at("memlend_mirrors_active") == 1);
  BOOST_TEST(at("memlend_unsatisfied_total") == 0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_scrape_of_the_process_matches_the_scenario) {
  TempDir dir;
  std::uint16_t port = free_loopback_port();
  std::string address = "127.0.0.1:" + std::to_string(port);
  ChildProcess server(target(address, fig2), dir.path + "/target");
  HttpResponse got;
  bool up = wait_until(server, 60, [&] {
    got = http_get("127.0.0.1", port, "/metrics", 5);
    return got.status == 200 && got.body.find("memlend_host_memory_lent_bytes{host=\"B\"} 0\n") == std::string::npos;
  });
  BOOST_TEST_REQUIRE(up, "the target serves /metrics: " << got.error << "\n" << server.err());
  expect_fig2_values(samples(got.body));

  auto check = promtool_check_metrics(got.body);
  BOOST_TEST(check.status == 0, "promtool check metrics: " << check.out << check.err);
  BOOST_TEST(server.stop() == 0);
}

BOOST_AUTO_TEST_CASE(a_bad_metrics_address_exits_2_with_one_line) {
  TempDir dir;
  for (std::string bad : {"127.0.0.1:99999", "nowhere:9464"}) {
    auto r = run_process(target(bad, fig2), 30);
    BOOST_TEST(r.status == 2);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    BOOST_TEST(r.err.find("--metrics: \"" + bad + "\"") != std::string::npos, r.err);
  }
  // A port already taken: by another server of ours.
  std::uint16_t port = free_loopback_port();
  std::string address = "127.0.0.1:" + std::to_string(port);
  ChildProcess first(target(address, fig2), dir.path + "/first");
  BOOST_TEST_REQUIRE(wait_until(first, 60, [&] { return http_get("127.0.0.1", port, "/metrics", 5).status == 200; }));
  auto r = run_process(target(address, fig2), 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("--metrics: cannot listen on " + address + ": Address already in use") != std::string::npos,
             r.err);
}

BOOST_AUTO_TEST_CASE(a_real_prometheus_server_scrapes_the_series_and_loads_the_alerts) {
  std::string prometheus = find_program("prometheus");
  BOOST_TEST_REQUIRE(!prometheus.empty(), "prometheus is on PATH (packaging/test-packages.txt)");
  TempDir dir;
  std::uint16_t target_port = free_loopback_port();
  std::string target_address = "127.0.0.1:" + std::to_string(target_port);
  ChildProcess server(target(target_address, fig2), dir.path + "/target");

  std::uint16_t prom_port = free_loopback_port();
  while (prom_port == target_port) prom_port = free_loopback_port();
  {
    std::ofstream cfg(dir.path + "/prometheus.yml");
    cfg << "global:\n"
           "  scrape_interval: 1s\n"
           "  evaluation_interval: 1s\n"
           "rule_files:\n"
           "  - \"" << alert_rules << "\"\n"
           "scrape_configs:\n"
           "  - job_name: memlend\n"
           "    static_configs:\n"
           "      - targets: [\"" << target_address << "\"]\n";
  }
  ChildProcess prom({prometheus, "--config.file=" + dir.path + "/prometheus.yml",
                     "--storage.tsdb.path=" + dir.path + "/data", "--web.listen-address=127.0.0.1:" + std::to_string(prom_port),
                     "--log.level=warn"},
                    dir.path + "/prometheus");
  BOOST_TEST_REQUIRE(wait_until(prom, 120, [&] { return http_get("127.0.0.1", prom_port, "/-/ready", 5).status == 200; }),
                     "Prometheus became ready:\n" << prom.err());

  auto query = [&](const std::string& promql) -> nlohmann::json {
    auto r = http_get("127.0.0.1", prom_port, "/api/v1/query?query=" + url_encode(promql), 10);
    if (r.status != 200) return nlohmann::json::array();
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return nlohmann::json::array();
    return j["data"]["result"];
  };
  // The value of a query that returns one series, once Prometheus has it.
  auto value = [&](const std::string& promql) -> std::optional<double> {
    auto result = query(promql);
    if (result.size() != 1) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  };

  auto number = [&](const std::string& promql) { return value(promql).value_or(-1); };

  std::optional<double> lent;
  bool arrived = wait_until(prom, 120, [&] {
    lent = value("memlend_host_memory_lent_bytes{job=\"memlend\",host=\"B\"} > 0");
    return lent.has_value();
  });
  BOOST_TEST_REQUIRE(arrived, "memlend's series arrived in Prometheus:\n" << prom.err() << server.err());
  BOOST_TEST(*lent == 49152 * mib);
  BOOST_TEST(number("up{job=\"memlend\"}") == 1);
  BOOST_TEST(number("sum(memlend_host_memory_borrowed_bytes)") == 49152 * mib);
  BOOST_TEST(number("memlend_decisions_total{kind=\"remote_memory\"}") == 1);
  BOOST_TEST(query("memlend_host_up").size() == 3u);

  // Every query of the Grafana dashboard runs on a real Prometheus (Grafana
  // itself is not packaged in Debian), with its variables set to "all".
  std::ifstream dash_in(dashboard);
  auto dash = nlohmann::json::parse(dash_in);
  std::size_t exprs = 0;
  for (const auto& panel : dash["panels"]) {
    if (!panel.contains("targets")) continue;
    for (const auto& t : panel["targets"]) {
      std::string expr = t["expr"];
      for (const char* var : {"$instance", "$host"})
        for (auto at = expr.find(var); at != std::string::npos; at = expr.find(var))
          expr.replace(at, std::string(var).size(), ".*");
      auto r = http_get("127.0.0.1", prom_port, "/api/v1/query?query=" + url_encode(expr), 10);
      BOOST_TEST(r.status == 200, panel["title"] << ": " << expr << ": " << r.body);
      ++exprs;
    }
  }
  BOOST_TEST(exprs >= 20u);

  // The alert rules loaded and evaluate without error against real series.
  nlohmann::json groups;
  bool evaluated = wait_until(prom, 60, [&] {
    auto r = http_get("127.0.0.1", prom_port, "/api/v1/rules", 10);
    if (r.status != 200) return false;
    groups = nlohmann::json::parse(r.body, nullptr, false)["data"]["groups"];
    if (!groups.is_array() || groups.empty()) return false;
    for (const auto& g : groups)
      for (const auto& rule : g["rules"])
        if (rule.value("lastEvaluation", "").rfind("0001-", 0) == 0) return false;  // not evaluated yet
    return true;
  });
  BOOST_TEST_REQUIRE(evaluated, "the alert rules were evaluated:\n" << prom.err());
  std::size_t rules = 0;
  for (const auto& g : groups)
    for (const auto& rule : g["rules"]) {
      ++rules;
      BOOST_TEST(rule.value("health", "") == "ok", rule.value("name", "") << ": " << rule.value("lastError", ""));
      // fig2's plan is healthy: nothing fires.
      BOOST_TEST(rule.value("state", "") == "inactive", rule.value("name", ""));
    }
  BOOST_TEST(rules >= 4u);
  BOOST_TEST(prom.stop() == 0);
  BOOST_TEST(server.stop() == 0);
}
