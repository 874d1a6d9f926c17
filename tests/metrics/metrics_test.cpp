#define BOOST_TEST_MODULE metrics
#include <boost/test/unit_test.hpp>

#include "cli/metrics_option.hpp"
#include "metrics/http_exposer.hpp"
#include "metrics/metrics.hpp"
#include "metrics/process.hpp"
#include "tests/metrics/exposition.hpp"
#include "tests/support/http_get.hpp"
#include "tests/support/child.hpp"

#include <arpa/inet.h>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>
#include <regex>
#include <set>
#include <sstream>


using namespace memlend;
using memlend::policy::DecisionKind;
using memlend::policy::Transport;

namespace {

const char* const every_family[] = {
    "memlend_build_info",
    "memlend_host_up",
    "memlend_host_memory_capacity_bytes",
    "memlend_host_memory_used_bytes",
    "memlend_host_memory_lent_bytes",
    "memlend_host_memory_borrowed_bytes",
    "memlend_host_cpu_capacity_hertz",
    "memlend_host_cpu_used_hertz",
    "memlend_leases",
    "memlend_mirror_lag_bytes",
    "memlend_lease_grants_total",
    "memlend_lease_releases_total",
    "memlend_lease_failures_total",
    "memlend_mirrors_active",
    "memlend_failovers_total",
    "memlend_mirror_failures_total",
    "memlend_memory_lost_total",
    "memlend_detections_total",
    "memlend_decisions_total",
    "memlend_vms_unsatisfied",
    "memlend_recommendations_total",
    "memlend_recommendations_outstanding",
    "memlend_decision_duration_seconds",
    "memlend_store_commit_duration_seconds",
    "memlend_actor_restarts_total",
    "memlend_datapath_page_faults_total",
    "memlend_datapath_read_bytes_total",
    "memlend_datapath_written_bytes_total",
    "memlend_datapath_mirror_written_bytes_total",
    "memlend_datapath_mirror_lag_bytes",
    "memlend_datapath_fault_duration_seconds",
};

void expect_promtool_accepts(const std::string& exposition) {
  auto r = test::promtool_check_metrics(exposition);
  BOOST_TEST(r.status == 0, "promtool check metrics: " << r.out << r.err);
}

// The metrics a small cluster would show: A lends nothing, B lends 48 GiB to a VM on A.
void fill(metrics::Registry& r) {
  auto a = r.host("A");
  auto b = r.host("B");
  a.up.set(1);
  b.up.set(1);
  a.memory_capacity_bytes.set_mib(16384);
  b.memory_capacity_bytes.set_mib(131072);
  a.cpu_capacity_hertz.set_mhz(32000);
  b.memory_lent_bytes.set_mib(49152);
  a.memory_borrowed_bytes.set_mib(49152);
  b.leases_in(memlend::LeaseState::active).inc();
  a.leases_in(memlend::LeaseState::failed).inc(2);
  a.mirror_lag_bytes.set(4096);
  r.lease_grants(Transport::rdma).inc();
  r.decisions(DecisionKind::remote_memory).inc();
  r.decisions(DecisionKind::unsatisfied).inc(2);
  r.vms_unsatisfied().set(1);
  r.lease_failures(metrics::LeaseFailure::donor_refused).inc();
  r.lease_releases(metrics::LeaseRelease::demand_fell).inc(3);
  r.mirrors_active().inc();
  r.failovers().inc();
  r.detections().inc(4);
  r.recommendations().inc();
  r.recommendations_outstanding().inc();
  r.actor_restarts("lease").inc();
  r.decision_duration().observe(0.0002);
  r.store_commit_duration().observe(0.003);
  auto dp = r.data_path(Transport::tcp);
  dp.page_faults.inc(10);
  dp.read_bytes.inc(10 * 1048576.0);
  dp.fault_duration.observe(0.0004);
}

void expect_filled_values(const std::map<std::string, double>& s) {
  auto at = [&](const std::string& series) {
    auto it = s.find(series);
    BOOST_TEST_REQUIRE((it != s.end()), "the scrape holds " << series);
    return it->second;
  };
  BOOST_TEST(at("memlend_host_up{host=\"A\"}") == 1);
  BOOST_TEST(at("memlend_host_memory_capacity_bytes{host=\"B\"}") == 131072.0 * 1048576);
  BOOST_TEST(at("memlend_host_cpu_capacity_hertz{host=\"A\"}") == 32e9);
  BOOST_TEST(at("memlend_host_memory_lent_bytes{host=\"B\"}") == 51539607552.0);
  BOOST_TEST(at("memlend_host_memory_lent_bytes{host=\"A\"}") == 0);
  BOOST_TEST(at("memlend_host_memory_borrowed_bytes{host=\"A\"}") == 51539607552.0);
  BOOST_TEST(at("memlend_leases{host=\"B\",state=\"active\"}") == 1);
  BOOST_TEST(at("memlend_leases{host=\"A\",state=\"failed\"}") == 2);
  BOOST_TEST(at("memlend_leases{host=\"B\",state=\"draining\"}") == 0);
  BOOST_TEST(at("memlend_mirror_lag_bytes{host=\"A\"}") == 4096);
  BOOST_TEST(at("memlend_lease_grants_total{transport=\"rdma\"}") == 1);
  BOOST_TEST(at("memlend_lease_grants_total{transport=\"tcp\"}") == 0);
  BOOST_TEST(at("memlend_decisions_total{kind=\"remote_memory\"}") == 1);
  BOOST_TEST(at("memlend_decisions_total{kind=\"unsatisfied\"}") == 2);
  BOOST_TEST(at("memlend_decisions_total{kind=\"migrate\"}") == 0);
  BOOST_TEST(at("memlend_vms_unsatisfied") == 1);
  BOOST_TEST(at("memlend_lease_failures_total{reason=\"donor_refused\"}") == 1);
  BOOST_TEST(at("memlend_lease_releases_total{reason=\"demand_fell\"}") == 3);
  BOOST_TEST(at("memlend_mirrors_active") == 1);
  BOOST_TEST(at("memlend_failovers_total") == 1);
  BOOST_TEST(at("memlend_detections_total") == 4);
  BOOST_TEST(at("memlend_recommendations_total") == 1);
  BOOST_TEST(at("memlend_recommendations_outstanding") == 1);
  BOOST_TEST(at("memlend_actor_restarts_total{kind=\"lease\"}") == 1);
  BOOST_TEST(at("memlend_actor_restarts_total{kind=\"vm\"}") == 0);
  BOOST_TEST(at("memlend_decision_duration_seconds_count") == 1);
  BOOST_TEST(at("memlend_decision_duration_seconds_bucket{le=\"0.0001\"}") == 0);
  BOOST_TEST(at("memlend_decision_duration_seconds_bucket{le=\"0.00025\"}") == 1);
  BOOST_TEST(at("memlend_store_commit_duration_seconds_sum") == 0.003);
  BOOST_TEST(at("memlend_datapath_page_faults_total{transport=\"tcp\"}") == 10);
  BOOST_TEST(at("memlend_datapath_read_bytes_total{transport=\"tcp\"}") == 10485760);
  BOOST_TEST(at("memlend_datapath_fault_duration_seconds_count{transport=\"tcp\"}") == 1);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_family_exists_from_the_start) {
  metrics::Registry r("1.2.3");
  // Per-host families show once a host is known: a family without a series
  // is not serialised.
  r.host("A");
  std::string text = r.exposition();
  for (const char* name : every_family)
    BOOST_TEST(text.find("# TYPE " + std::string(name) + " ") != std::string::npos, name << " is declared");
  auto s = test::samples(text);
  BOOST_TEST(s.at("memlend_build_info{role=\"controller\",version=\"1.2.3\"}") == 1);
  // Labelled by a fixed set of words: every series is there at 0, so rate()
  // and alerts see a zero rather than no data.
  BOOST_TEST(s.at("memlend_decisions_total{kind=\"recommend_migration\"}") == 0);
  BOOST_TEST(s.at("memlend_lease_failures_total{reason=\"platform_refused\"}") == 0);
  BOOST_TEST(s.count("memlend_lease_failures_total{reason=\"store\"}") == 0u);
  BOOST_TEST(s.at("memlend_actor_restarts_total{kind=\"mirror\"}") == 0);
  BOOST_TEST(s.at("memlend_datapath_page_faults_total{transport=\"rdma\"}") == 0);
  // Every name is memlend_*, but the process families every client library has.
  for (const auto& [series, value] : s)
    BOOST_TEST((series.rfind("memlend_", 0) == 0u || series.rfind("process_", 0) == 0u), series);
  expect_promtool_accepts(text);
}

BOOST_AUTO_TEST_CASE(handles_update_their_series) {
  metrics::Registry r;
  fill(r);
  expect_filled_values(test::samples(r.exposition()));
}

BOOST_AUTO_TEST_CASE(a_host_is_made_once) {
  metrics::Registry r;
  r.host("A").memory_used_bytes.set_mib(1);
  r.host("A").memory_used_bytes.inc(1);
  auto s = test::samples(r.exposition());
  BOOST_TEST(s.at("memlend_host_memory_used_bytes{host=\"A\"}") == 1048577);
  std::size_t series = 0;
  for (const auto& [name, v] : s) series += name.rfind("memlend_host_memory_used_bytes{", 0) == 0;
  BOOST_TEST(series == 1u);
}

BOOST_AUTO_TEST_CASE(an_unbound_handle_does_nothing) {
  metrics::Counter c;
  metrics::Gauge g;
  metrics::Histogram h;
  c.inc();
  g.set(3);
  h.observe(1);
  BOOST_TEST(!c);
  BOOST_TEST(c.value() == 0);
  BOOST_TEST(g.value() == 0);
}

BOOST_AUTO_TEST_CASE(a_real_scrape_over_http_shows_the_values) {
  metrics::Registry r;
  fill(r);
  auto e = metrics::HttpExposer::start(r, "127.0.0.1:0");
  BOOST_TEST_REQUIRE(static_cast<bool>(e), (e ? "" : e.error().message));
  std::uint16_t port = (*e)->address().port;
  BOOST_TEST(port != 0);
  auto got = test::http_get("127.0.0.1", port, "/metrics");
  BOOST_TEST_REQUIRE(got.status == 200, got.error << got.headers);
  BOOST_TEST(got.headers.find("Content-Type: text/plain") != std::string::npos, got.headers);
  expect_filled_values(test::samples(got.body));
  expect_promtool_accepts(got.body);
  // A value set after a scrape shows in the next one: the page is made per request.
  r.host("B").up.set(0);
  auto again = test::samples(test::http_get("127.0.0.1", port, "/metrics").body);
  BOOST_TEST(again.at("memlend_host_up{host=\"B\"}") == 0);
}

namespace {

// A TCP connection to the exposer that never sends a request.
struct IdleConnection {
  explicit IdleConnection(std::uint16_t port) : fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_TEST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0, std::strerror(errno));
  }
  ~IdleConnection() { ::close(fd); }
  IdleConnection(const IdleConnection&) = delete;
  IdleConnection& operator=(const IdleConnection&) = delete;

  // True when the server closed it within `limit_ms`.
  bool closed_by_server(int limit_ms) const {
    pollfd p{fd, POLLIN, 0};
    char b;
    return ::poll(&p, 1, limit_ms) == 1 && ::recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
  }

  int fd;
};

// Serves a filled registry, opens connections that send nothing, then
// scrapes; the server and the connections stay open for the test to look at.
struct ScrapeBehindIdle {
  ScrapeBehindIdle(const metrics::ExposerLimits& limits, int idle_connections, double timeout_s) {
    fill(registry);
    auto e = metrics::HttpExposer::start(registry, "127.0.0.1:0", limits);
    BOOST_TEST_REQUIRE(static_cast<bool>(e), (e ? "" : e.error().message));
    exposer = std::move(*e);
    std::uint16_t port = exposer->address().port;
    for (int i = 0; i < idle_connections; ++i) idle.push_back(std::make_unique<IdleConnection>(port));
    got = test::http_get("127.0.0.1", port, "/metrics", timeout_s);
  }
  metrics::Registry registry;
  std::unique_ptr<metrics::HttpExposer> exposer;
  std::vector<std::unique_ptr<IdleConnection>> idle;
  test::HttpResponse got;
};

}  // namespace

BOOST_AUTO_TEST_CASE(idle_connections_do_not_starve_a_scrape) {
  // Four times the two worker threads the exposer once had, which then held
  // every scrape for civetweb's default 30 s request timeout.
  ScrapeBehindIdle s({}, 8, 10);
  BOOST_TEST(s.got.status == 200, s.got.error << s.got.headers);
}

BOOST_AUTO_TEST_CASE(idle_connections_beyond_the_threads_are_dropped_at_the_request_timeout) {
  // Three times the threads: the scrape waits its turn behind them, each
  // dropped after 300 ms, and is served.
  ScrapeBehindIdle s({2, std::chrono::milliseconds(300)}, 6, 20);
  BOOST_TEST(s.got.status == 200, s.got.error << s.got.headers);
  for (auto& c : s.idle) BOOST_TEST(c->closed_by_server(20000));
}

BOOST_AUTO_TEST_CASE(probes_are_served_beside_the_metrics) {
  metrics::Registry r;
  std::string reason = "starting: the store is not open yet";
  auto e = metrics::HttpExposer::start(r, "127.0.0.1:0", {}, [&reason]() -> std::optional<std::string> {
    if (reason.empty()) return std::nullopt;
    return reason;
  });
  BOOST_TEST_REQUIRE(static_cast<bool>(e));
  auto port = (*e)->address().port;
  auto health = test::http_get("127.0.0.1", port, "/healthz");
  BOOST_TEST(health.status == 200);
  BOOST_TEST(health.body == "ok\n");
  auto ready = test::http_get("127.0.0.1", port, "/readyz");
  BOOST_TEST(ready.status == 503);
  BOOST_TEST(ready.body == reason + "\n");
  reason.clear();
  ready = test::http_get("127.0.0.1", port, "/readyz");
  BOOST_TEST(ready.status == 200);
  BOOST_TEST(ready.body == "ready\n");
  BOOST_TEST(test::http_get("127.0.0.1", port, "/metrics").status == 200);
  BOOST_TEST(test::http_get("127.0.0.1", port, "/other").status == 404);

  // Without a readiness check (an agent) there is no /readyz, and another
  // server's check is not borrowed.
  auto plain = metrics::HttpExposer::start(r, "127.0.0.1:0");
  BOOST_TEST_REQUIRE(static_cast<bool>(plain));
  auto other = (*plain)->address().port;
  BOOST_TEST(test::http_get("127.0.0.1", other, "/healthz").status == 200);
  BOOST_TEST(test::http_get("127.0.0.1", other, "/readyz").status == 404);
}

BOOST_AUTO_TEST_CASE(bad_addresses_are_clear_errors) {
  for (const char* text : {"", "9464", "127.0.0.1", "127.0.0.1:", ":9464", "127.0.0.1:99999", "127.0.0.1:94x",
                           "host.example:9464", "[::1]:9464", "1.2.3:9464"}) {
    auto a = metrics::parse_listen_address(text);
    BOOST_TEST(!a, "\"" << text << "\" is refused");
    if (!a) BOOST_TEST(a.error().message.find("example: 127.0.0.1:9464") != std::string::npos, a.error().message);
  }
  auto local = metrics::parse_listen_address("localhost:9464");
  BOOST_TEST_REQUIRE(static_cast<bool>(local));
  BOOST_TEST(local->text() == "127.0.0.1:9464");
  BOOST_TEST(metrics::parse_listen_address("0.0.0.0:0")->port == 0);
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_a_clear_error) {
  metrics::Registry r;
  auto first = metrics::HttpExposer::start(r, "127.0.0.1:0");
  BOOST_TEST_REQUIRE(static_cast<bool>(first));
  std::string taken = (*first)->address().text();
  auto second = cli::serve_metrics(r, taken);
  BOOST_TEST_REQUIRE(!second);
  BOOST_TEST(second.error().message == "--metrics: cannot listen on " + taken + ": Address already in use");
}

BOOST_AUTO_TEST_CASE(an_address_not_on_this_node_is_a_clear_error) {
  metrics::Registry r;
  // TEST-NET-1 (RFC 5737): never an address of this machine.
  auto e = metrics::HttpExposer::start(r, "192.0.2.1:9464");
  BOOST_TEST_REQUIRE(!e);
  BOOST_TEST(e.error().message == "cannot listen on 192.0.2.1:9464: Cannot assign requested address");
}

// The dashboard and the alert rules name only metrics that exist: a typo
// there would show an empty panel or an alert that never fires.
BOOST_AUTO_TEST_CASE(the_dashboard_and_the_alerts_name_only_real_metrics) {
  metrics::Registry r;
  r.host("A");
  std::set<std::string> declared;
  for (const char* name : every_family) declared.insert(name);
  std::string text = r.exposition();
  for (const auto& name : declared) BOOST_TEST(text.find("# TYPE " + name + " ") != std::string::npos, name);
  std::regex metric_name("memlend_[a-z_]+");
  for (const char* file : {"/packaging/memlend-dashboard.json", "/packaging/memlend-alerts.yml"}) {
    std::ifstream in(std::string(MEMLEND_SOURCE_DIR) + file);
    std::stringstream body;
    body << in.rdbuf();
    std::string s = body.str();
    BOOST_TEST_REQUIRE(!s.empty(), file);
    std::size_t names = 0;
    for (std::sregex_iterator it(s.begin(), s.end(), metric_name), end; it != end; ++it) {
      std::string name = it->str();
      for (const char* suffix : {"_bucket", "_count", "_sum"})
        if (!declared.count(name) && name.size() > std::strlen(suffix) &&
            name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
          name.resize(name.size() - std::strlen(suffix));
      BOOST_TEST(declared.count(name) == 1u, file << " names " << it->str());
      ++names;
    }
    BOOST_TEST(names > 4u, file);
  }
}

// An agent serves what it owns: its data path and its process, not the
// controller's families at zero.
BOOST_AUTO_TEST_CASE(an_agent_exports_only_the_families_it_owns) {
  metrics::Registry r("1.2.3", "agent");
  auto host = r.host("A");
  host.up.set(1);  // a handle of a family the agent lacks does nothing
  r.actor_restarts("lease").inc();
  r.data_path(policy::Transport::tcp).page_faults.inc(3);
  auto s = test::samples(r.exposition());
  BOOST_TEST(s.at("memlend_build_info{role=\"agent\",version=\"1.2.3\"}") == 1);
  BOOST_TEST(s.at("memlend_datapath_page_faults_total{transport=\"tcp\"}") == 3);
  BOOST_TEST(s.count("process_open_fds") == 1u);
  for (const auto& [series, value] : s) {
    bool owned = series.rfind("memlend_build_info", 0) == 0 || series.rfind("memlend_datapath_", 0) == 0 ||
                 series.rfind("process_", 0) == 0;
    BOOST_TEST(owned, series << " is the agent's");
  }
}

// The process families every client library has, read at scrape time.
BOOST_AUTO_TEST_CASE(the_process_families_describe_this_process) {
  metrics::Registry r;
  auto s = test::samples(r.exposition());
  for (const char* name : {"process_cpu_seconds_total", "process_start_time_seconds", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds"})
    BOOST_TEST(s.count(name) == 1u, name);
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  BOOST_TEST(s.at("process_start_time_seconds") <= now + 1);
  BOOST_TEST(s.at("process_start_time_seconds") > now - 86400);
  BOOST_TEST(s.at("process_resident_memory_bytes") > 1e6);
  BOOST_TEST(s.at("process_open_fds") >= 3);
  BOOST_TEST(s.at("process_max_fds") >= s.at("process_open_fds"));
  auto check = test::promtool_check_metrics(r.exposition());
  BOOST_TEST(check.status == 0, check.out << check.err);
}

BOOST_AUTO_TEST_CASE(proc_stat_is_read_past_a_command_name_with_parentheses) {
  // A command name with a space and a ')' of its own; utime 300, stime 100
  // ticks, started 500 ticks after boot, 8 MiB virtual, 256 pages resident.
  std::string stat =
      "4242 (mem) lend x) S 1 4242 4242 0 -1 4194560 100 0 0 0 300 100 0 0 20 0 3 0 500 8388608 256 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  std::string proc_stat = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 10\n";
  auto p = metrics::parse_process_stat(stat, proc_stat, 100, 4096);
  BOOST_TEST_REQUIRE(p.has_value());
  BOOST_TEST(p->cpu_seconds == 4.0);
  BOOST_TEST(p->start_time_s == 1700000005.0);
  BOOST_TEST(p->virtual_bytes == 8388608.0);
  BOOST_TEST(p->resident_bytes == 256.0 * 4096);
  BOOST_TEST(!metrics::parse_process_stat("4242 (memlend) S 1 2", proc_stat, 100, 4096).has_value());
  BOOST_TEST(!metrics::parse_process_stat(stat, "cpu 1 2 3\n", 100, 4096).has_value());
  BOOST_TEST(!metrics::parse_process_stat("no parenthesis", proc_stat, 100, 4096).has_value());
}
