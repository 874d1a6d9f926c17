#define BOOST_TEST_MODULE metrics_scrape
#include <boost/test/unit_test.hpp>

// Scrapes a real `memlend run --metrics` child process on a small scenario
// with known values: first with a plain HTTP GET (values, then promtool),
// then with a real Prometheus server on loopback, queried through its HTTP
// API. Waits are bounded and only for the processes to come up or for the
// run to reach a point of its scenario, never to assert on timing.

#include "tests/metrics/exposition.hpp"
#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

using namespace memlend::test;

namespace {

const std::string source_dir = MEMLEND_SOURCE_DIR;
const std::string alert_rules = source_dir + "/packaging/memlend-alerts.yml";
const std::string dashboard = source_dir + "/packaging/memlend-dashboard.json";
constexpr double mib = 1024.0 * 1024.0;

// FIG. 2's cluster, with N lacking an RDMA NIC; VM2's demand grows at t=15 s,
// three samples later (t=40 s) B lends it 48 GiB over RDMA. VM5 fits on N.
// migrate_after_s is long: nothing else happens however long the run goes.
const char* scenario = R"({
  "settings": { "sample_period_s": 10, "detect_samples": 3, "migrate_after_s": 86400 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
             { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000, "rdma": false } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 },
           { "name": "VM5", "host": "N", "memory_mib": 12288, "cpu_mhz": 2000 } ],
  "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 } ]
})";

struct TempDir {
  std::string path = make_temp_dir("scrape");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// memlend run on the scenario, serving metrics at `address`: at 50x a sample
// is 0.2 s apart, the lease comes within a second or two, and --for leaves
// hours for the test to stop it. Each run has its own store (`name`), so that
// none resumes another's state.
std::vector<std::string> memlend_run(const TempDir& dir, const std::string& address,
                                     const std::string& name = "memlend") {
  std::string file = dir.path + "/scenario.json";
  if (!std::filesystem::exists(file)) std::ofstream(file) << scenario;
  return {MEMLEND_BINARY, "run", "--scenario", file, "--metrics", address, "--speed", "50", "--for", "10h",
          "--quiet", "--datastore", dir.path + "/datastore", "--events-out", dir.path + "/" + name + ".jsonl",
          "--db", dir.path + "/" + name + ".db"};
}

// The series' value, failing the test when the scrape lacks it.
double at(const std::map<std::string, double>& s, const std::string& series) {
  auto it = s.find(series);
  BOOST_TEST_REQUIRE((it != s.end()), "the scrape holds " << series);
  return it->second;
}

// Polls until `ready` says yes or the child exits; bounded, because a server
// that never comes up must fail the test, not hang it. Only for waiting on
// processes starting, never to assert on timing.
template <class Ready>
bool wait_until(Child& child, double timeout_s, Ready ready) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    if (!child.running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// What the scenario says once B's lease to VM2 is in place.
void expect_scenario_values(const std::map<std::string, double>& s) {
  for (const char* h : {"A", "B", "N"}) BOOST_TEST(at(s, "memlend_host_up{host=\"" + std::string(h) + "\"}") == 1);
  BOOST_TEST(at(s, "memlend_host_memory_capacity_bytes{host=\"A\"}") == 16384 * mib);
  BOOST_TEST(at(s, "memlend_host_memory_capacity_bytes{host=\"B\"}") == 131072 * mib);
  BOOST_TEST(at(s, "memlend_host_cpu_capacity_hertz{host=\"A\"}") == 32000e6);
  BOOST_TEST(at(s, "memlend_host_memory_used_bytes{host=\"A\"}") == 16384 * mib);
  BOOST_TEST(at(s, "memlend_host_memory_used_bytes{host=\"N\"}") == 12288 * mib);
  BOOST_TEST(at(s, "memlend_host_cpu_used_hertz{host=\"A\"}") == 16000e6);
  BOOST_TEST(at(s, "memlend_host_memory_lent_bytes{host=\"B\"}") == 49152 * mib);
  BOOST_TEST(at(s, "memlend_host_memory_lent_bytes{host=\"N\"}") == 0);
  BOOST_TEST(at(s, "memlend_host_memory_borrowed_bytes{host=\"A\"}") == 49152 * mib);
  BOOST_TEST(at(s, "memlend_leases{host=\"B\",state=\"active\"}") == 1);
  BOOST_TEST(at(s, "memlend_lease_grants_total{transport=\"rdma\"}") == 1);
  BOOST_TEST(at(s, "memlend_lease_grants_total{transport=\"tcp\"}") == 0);
  BOOST_TEST(at(s, "memlend_detections_total") == 1);
  BOOST_TEST(at(s, "memlend_decisions_total{kind=\"remote_memory\"}") == 1);
  BOOST_TEST(at(s, "memlend_decision_duration_seconds_count") == 1);
  // Every transition went through the store (the run has --db).
  BOOST_TEST(at(s, "memlend_store_commit_duration_seconds_count") > 0);
  BOOST_TEST(at(s, "memlend_actor_restarts_total{kind=\"lease\"}") == 0);
  BOOST_TEST(at(s, "memlend_mirrors_active") == 1);
  BOOST_TEST(at(s, "memlend_decisions_total{kind=\"unsatisfied\"}") == 0);
  BOOST_TEST(at(s, "memlend_failovers_total") == 0);
  BOOST_TEST(at(s, "memlend_build_info{role=\"controller\",version=\"" MEMLEND_VERSION "\"}") == 1);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_scrape_of_memlend_run_matches_the_scenario) {
  TempDir dir;
  std::uint16_t port = free_loopback_port();
  std::string address = "127.0.0.1:" + std::to_string(port);
  Child server(memlend_run(dir, address), dir.path + "/memlend");
  HttpResponse got;
  std::map<std::string, double> s;
  // Until the lease is in the gauges and the guest workload has faulted on its
  // memory and read some of it back from the donor (its first writes fetch nothing).
  bool ready = wait_until(server, 120, [&] {
    got = http_get("127.0.0.1", port, "/metrics", 5);
    if (got.status != 200) return false;
    s = samples(got.body);
    return s["memlend_leases{host=\"B\",state=\"active\"}"] == 1 && s["memlend_host_memory_lent_bytes{host=\"B\"}"] > 0 &&
           s["memlend_datapath_fault_duration_seconds_count{transport=\"tcp\"}"] > 0 &&
           s["memlend_datapath_read_bytes_total{transport=\"tcp\"}"] > 0;
  });
  BOOST_TEST_REQUIRE(ready, "memlend run serves the lease's metrics: " << got.error << "\n" << got.body << server.err());
  expect_scenario_values(s);

  // The data path is real (TCP on loopback, whatever the hosts' NICs): faults,
  // bytes each way, and their service time.
  BOOST_TEST(at(s, "memlend_datapath_page_faults_total{transport=\"tcp\"}") > 0);
  BOOST_TEST(at(s, "memlend_datapath_read_bytes_total{transport=\"tcp\"}") > 0);
  BOOST_TEST(at(s, "memlend_datapath_page_faults_total{transport=\"rdma\"}") == 0);
  BOOST_TEST(at(s, "memlend_datapath_fault_duration_seconds_sum{transport=\"tcp\"}") > 0);
  BOOST_TEST(at(s, "memlend_datapath_fault_duration_seconds_bucket{transport=\"tcp\",le=\"+Inf\"}") ==
             at(s, "memlend_datapath_fault_duration_seconds_count{transport=\"tcp\"}"));

  // The counters agree with the event log the same run wrote.
  std::ifstream events(dir.path + "/memlend.jsonl");
  std::map<std::string, int> logged;
  for (std::string line; std::getline(events, line);) ++logged[nlohmann::json::parse(line).at("event").get<std::string>()];
  BOOST_TEST(logged["need_detected"] == at(s, "memlend_detections_total"));
  BOOST_TEST(logged["lease_granted"] == at(s, "memlend_lease_grants_total{transport=\"rdma\"}"));

  auto check = promtool_check_metrics(got.body);
  BOOST_TEST(check.status == 0, "promtool check metrics: " << check.out << check.err);
  BOOST_TEST(server.stop() == 0, server.err());
  BOOST_TEST(server.err().find("serving metrics at http://" + address + "/metrics") != std::string::npos,
             server.err());
}

BOOST_AUTO_TEST_CASE(a_bad_metrics_address_exits_2_with_one_line) {
  TempDir dir;
  for (std::string bad : {"127.0.0.1:99999", "nowhere:9464"}) {
    auto r = run_process(memlend_run(dir, bad), 30);
    BOOST_TEST(r.status == 2);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    BOOST_TEST(r.err.find("memlend: --metrics: \"" + bad + "\"") != std::string::npos, r.err);
  }
  // A port already taken: by another memlend.
  std::uint16_t port = free_loopback_port();
  std::string address = "127.0.0.1:" + std::to_string(port);
  Child first(memlend_run(dir, address), dir.path + "/first");
  BOOST_TEST_REQUIRE(wait_until(first, 60, [&] { return http_get("127.0.0.1", port, "/metrics", 5).status == 200; }));
  auto r = run_process(memlend_run(dir, address, "second"), 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  BOOST_TEST(r.err.find("memlend: --metrics: cannot listen on " + address + ": Address already in use") !=
                 std::string::npos,
             r.err);
  // Refused before its store was opened: nothing left behind.
  BOOST_TEST(!std::filesystem::exists(dir.path + "/second.db"));
  BOOST_TEST(first.stop() == 0);
}

BOOST_AUTO_TEST_CASE(a_real_prometheus_server_scrapes_the_series_and_loads_the_alerts) {
  std::string prometheus = find_program("prometheus");
  BOOST_TEST_REQUIRE(!prometheus.empty(), "prometheus is on PATH (packaging/test-packages.txt)");
  TempDir dir;
  std::uint16_t target_port = free_loopback_port();
  std::string target_address = "127.0.0.1:" + std::to_string(target_port);
  Child server(memlend_run(dir, target_address), dir.path + "/memlend");

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
  Child prom({prometheus, "--config.file=" + dir.path + "/prometheus.yml",
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
    return lent.has_value() && value("memlend_datapath_read_bytes_total{transport=\"tcp\"} > 0").has_value();
  });
  BOOST_TEST_REQUIRE(arrived, "memlend's series arrived in Prometheus:\n" << prom.err() << server.err());
  BOOST_TEST(*lent == 49152 * mib);
  BOOST_TEST(number("up{job=\"memlend\"}") == 1);
  BOOST_TEST(number("sum(memlend_host_memory_borrowed_bytes)") == 49152 * mib);
  BOOST_TEST(number("sum(memlend_host_memory_capacity_bytes)") == (16384 + 131072 + 16384) * mib);
  BOOST_TEST(number("memlend_leases{host=\"B\",state=\"active\"}") == 1);
  BOOST_TEST(number("memlend_detections_total") == 1);
  BOOST_TEST(number("memlend_decisions_total{kind=\"remote_memory\"}") == 1);
  BOOST_TEST(number("memlend_lease_grants_total{transport=\"rdma\"}") == 1);
  BOOST_TEST(number("memlend_datapath_read_bytes_total{transport=\"tcp\"}") > 0);
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
      // Grafana sets $__rate_interval to at least four scrape intervals.
      for (auto [var, value] : {std::pair{"$instance", ".*"}, {"$host", ".*"}, {"$__rate_interval", "1m"}})
        for (auto at = expr.find(var); at != std::string::npos; at = expr.find(var))
          expr.replace(at, std::string(var).size(), value);
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
      // The scenario is healthy: nothing fires. MemlendAbsent may still be
      // pending from an evaluation before the first scrape.
      if (rule.value("name", "") == "MemlendAbsent")
        BOOST_TEST(rule.value("state", "") != "firing");
      else
        BOOST_TEST(rule.value("state", "") == "inactive", rule.value("name", ""));
    }
  BOOST_TEST(rules >= 4u);
  BOOST_TEST(prom.stop() == 0);
  BOOST_TEST(server.stop() == 0);
}
