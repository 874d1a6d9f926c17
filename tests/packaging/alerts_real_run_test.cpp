#define BOOST_TEST_MODULE alerts_real_run
#include <boost/test/unit_test.hpp>

// Each alert of packaging/memlend-alerts.yml shown firing on what memlend
// really exports: a real `memlend run` goes through the alert's situation (a
// donor killed while it lends and nobody can re-home, a need nobody can meet,
// a datastore too full for the mirror, the process killed -9 and gone), its
// /metrics is scraped over HTTP throughout, and the scrapes become the input
// series of a `promtool test rules` file, one scrape a minute of promtool's
// clock, with `up` 1 or 0 as Prometheus would record it. The file then asks
// promtool which alerts fire when: none while the run is healthy, each one
// after its situation has lasted its `for:`. Scrapes are paced by the run's
// progress, never timed.

#include "tests/metrics/exposition.hpp"
#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"

#include <sys/mount.h>
#include <unistd.h>

#include <csignal>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

using namespace memlend::test;

namespace {

const std::string source_dir = MEMLEND_SOURCE_DIR;
const std::string job = "memlend-real-run";

// B lends VM2 48 GiB at t=30 and goes down at t=100; C is too small to take
// the lease over, so it stays failed. VM3 then wants more than the cluster
// has. At 20x a sample is half a second apart.
const char* scenario = R"({
  "settings": { "sample_period_s": 10, "detect_samples": 2, "migrate_after_s": 86400 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
             { "name": "C", "memory_mib": 8192, "cpu_mhz": 8000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 },
           { "name": "VM3", "host": "C", "memory_mib": 4096, "cpu_mhz": 2000 } ],
  "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 },
              { "at_s": 100, "host": "B", "up": false },
              { "at_s": 120, "vm": "VM3", "memory_mib": 400000 } ]
})";

struct TempDir {
  std::string path = make_temp_dir("alerts");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A small tmpfs as the shared datastore: the mirror's first writes fill it.
struct FullDatastore {
  std::string path;
  bool mounted = false;
  std::string why;
  explicit FullDatastore(std::string p) : path(std::move(p)) {
    std::filesystem::create_directories(path);
    mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, "size=256k") == 0;
    if (!mounted) why = std::string("cannot mount a tmpfs for the datastore: ") + std::strerror(errno);
  }
  ~FullDatastore() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

using Scrape = std::map<std::string, double>;  // empty: the scrape failed (up 0)

struct Run {
  std::uint16_t port = 0;
  std::vector<Scrape> scrapes;
  std::size_t killed_at = 0;  // the first scrape after kill -9

  std::string instance() const { return "127.0.0.1:" + std::to_string(port); }
  static double get(const Scrape& s, const std::string& series) {
    auto it = s.find(series);
    return it == s.end() ? -1 : it->second;
  }
  // The first scrape at or after `from` where `holds` is true.
  std::optional<std::size_t> first(std::function<bool(const Scrape&)> holds, std::size_t from = 0) const {
    for (std::size_t i = from; i < scrapes.size(); ++i)
      if (!scrapes[i].empty() && holds(scrapes[i])) return i;
    return std::nullopt;
  }
};

Scrape scrape(std::uint16_t port) {
  auto r = http_get("127.0.0.1", port, "/metrics", 5);
  if (r.status != 200) return {};
  return samples(r.body);
}

// How one run is made and paced. Each scrape is a minute of promtool's
// clock: by default 150 ms apart, a fraction of the run's sample period
// (0.5 s at 20x), so that the timeline follows the run.
struct RecordOptions {
  std::vector<std::string> program = {MEMLEND_BINARY};
  const char* scenario = ::scenario;
  std::chrono::milliseconds pace{150};
  std::function<void(const Run&)> after_scrape = [](const Run&) {};
  std::function<void()> before_kill = [] {};
  // What a failure says of the run, beside the bound.
  std::function<std::string(const Run&)> describe = [](const Run& r) {
    return std::to_string(r.scrapes.size()) + " scrapes";
  };
};

// Runs memlend on the scenario and scrapes it until `done` says the
// situations have lasted long enough (or a bound passes), then kills it -9
// and records `dead` failed scrapes.
Run record(const TempDir& dir, const std::string& datastore, const std::string& name,
           std::function<bool(const Run&)> done, std::size_t dead, const RecordOptions& how = {}) {
  Run run;
  run.port = free_loopback_port();
  std::string file = dir.path + "/" + name + ".json";
  std::ofstream(file) << how.scenario;
  std::vector<std::string> argv = how.program;
  std::vector<std::string> args = {"run", "--scenario", file, "--metrics", run.instance(), "--speed", "20",
                                   "--for", "10h", "--quiet", "--datastore", datastore, "--events-out",
                                   dir.path + "/" + name + ".jsonl", "--db", dir.path + "/" + name + ".db"};
  argv.insert(argv.end(), args.begin(), args.end());
  Child memlend(argv, dir.path + "/" + name);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  // Until it serves, a failed scrape is not a point of the timeline.
  while (scrape(run.port).empty() && memlend.running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  while (memlend.running() && std::chrono::steady_clock::now() < deadline) {
    run.scrapes.push_back(scrape(run.port));
    how.after_scrape(run);
    if (done(run)) break;
    std::this_thread::sleep_for(how.pace);
  }
  how.before_kill();
  BOOST_TEST_REQUIRE(memlend.running(), "memlend ran through the scenario: " << memlend.err());
  BOOST_TEST_REQUIRE(done(run), "the run reached its situations within the bound; " << how.describe(run));
  memlend.kill9();
  memlend.wait(std::chrono::seconds(10));
  run.killed_at = run.scrapes.size();
  for (std::size_t i = 0; i < dead; ++i) {
    Scrape s = scrape(run.port);
    BOOST_TEST_REQUIRE(s.empty(), "nothing answers once memlend is killed");
    run.scrapes.push_back(s);
  }
  return run;
}

std::string labelled(const std::string& series, const Run& run) {
  std::string extra = "job=\"" + job + "\",instance=\"" + run.instance() + "\"";
  auto brace = series.find('{');
  if (brace == std::string::npos) return series + "{" + extra + "}";
  return series.substr(0, brace + 1) + extra + "," + series.substr(brace + 1);
}

struct Expect {
  std::string alert;
  std::size_t at;          // scrape index = minutes on promtool's clock
  bool firing;
  std::string labels;      // the alert's own labels beyond alertname/alertstate, when firing
};

// The promtool test file: every series of every scrape, `_` where a scrape
// lacked it, and `up`; then each expectation as a query of ALERTS.
std::string promtool_file(const Run& run, const std::vector<Expect>& expects) {
  std::set<std::string> names;
  for (const auto& s : run.scrapes)
    for (const auto& [series, value] : s) names.insert(series);
  std::ostringstream f;
  f << "rule_files:\n  - " << source_dir << "/packaging/memlend-alerts.yml\n"
    << "evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n";
  f.precision(17);
  for (const auto& name : names) {
    f << "      - series: '" << labelled(name, run) << "'\n        values: '";
    for (std::size_t i = 0; i < run.scrapes.size(); ++i) {
      auto it = run.scrapes[i].find(name);
      if (i) f << ' ';
      if (it == run.scrapes[i].end()) f << '_';
      else f << it->second;
    }
    f << "'\n";
  }
  f << "      - series: 'up{job=\"" << job << "\",instance=\"" << run.instance() << "\"}'\n        values: '";
  for (std::size_t i = 0; i < run.scrapes.size(); ++i) f << (i ? " " : "") << (run.scrapes[i].empty() ? 0 : 1);
  f << "'\n    promql_expr_test:\n";
  for (const auto& e : expects) {
    f << "      - expr: 'ALERTS{alertname=\"" << e.alert << "\",alertstate=\"firing\"}'\n"
      << "        eval_time: " << e.at << "m\n";
    if (!e.firing) {
      f << "        exp_samples: []\n";
      continue;
    }
    f << "        exp_samples:\n          - labels: 'ALERTS{alertname=\"" << e.alert << "\",alertstate=\"firing\""
      << (e.labels.empty() ? "" : ",") << e.labels << "}'\n            value: 1\n";
  }
  return f.str();
}

void expect_promtool(const TempDir& dir, const std::string& name, const std::string& file) {
  std::string promtool = find_program("promtool");
  BOOST_TEST_REQUIRE(!promtool.empty(), "promtool is on PATH (packaging/test-packages.txt)");
  std::string path = dir.path + "/" + name + ".yml";
  std::ofstream(path) << file;
  auto r = run_process({promtool, "test", "rules", path}, 120);
  BOOST_TEST(r.status == 0, "promtool test rules " << name << ".yml:\n" << r.out << r.err);
}

std::string of(const Run& run, const std::string& more = "") {
  return "instance=\"" + run.instance() + "\",job=\"" + job + "\"" + (more.empty() ? "" : "," + more);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_dead_donor_an_unmet_need_and_a_dead_controller_each_fire_their_alert) {
  TempDir dir;
  std::filesystem::create_directories(dir.path + "/datastore");
  auto lent = [](const Scrape& s) {
    return Run::get(s, "memlend_leases{host=\"B\",state=\"active\"}") == 1 &&
           Run::get(s, "memlend_host_up{host=\"B\"}") == 1;
  };
  auto donor_down = [](const Scrape& s) {
    return Run::get(s, "memlend_host_up{host=\"B\"}") == 0 &&
           Run::get(s, "memlend_leases{host=\"B\",state=\"failed\"}") >= 1;
  };
  auto unmet = [](const Scrape& s) { return Run::get(s, "memlend_vms_unsatisfied") >= 1; };
  // Long enough for each `for:` (1m, 10m) with a minute to spare, and the
  // situations still standing at the end.
  auto done = [&](const Run& r) {
    auto down = r.first(donor_down), need = r.first(unmet);
    return down && need && r.scrapes.size() >= *down + 4 && r.scrapes.size() >= *need + 13 &&
           donor_down(r.scrapes.back()) && unmet(r.scrapes.back());
  };
  // MemlendAbsent waits out Prometheus's 5-minute lookback, then its 10m.
  Run run = record(dir, dir.path + "/datastore", "run", done, 20);
  auto healthy = run.first(lent);
  auto down = run.first(donor_down);
  auto need = run.first(unmet);
  BOOST_TEST_REQUIRE(healthy.has_value(), "B lent VM2 its lease while up");
  BOOST_TEST_REQUIRE((*healthy < *down && *down < *need), "the run went through its situations in order");

  std::vector<Expect> expects;
  for (const char* alert : {"MemlendDown", "MemlendAbsent", "MemlendDonorDownWithActiveLeases",
                            "MemlendUnsatisfiedNeeds", "MemlendMirrorFailed", "MemlendMirrorStalled",
                            "MemlendActorRestartStorm"})
    expects.push_back({alert, *healthy, false, ""});
  expects.push_back({"MemlendDonorDownWithActiveLeases", *down + 3, true, of(run, "host=\"B\",severity=\"critical\"")});
  expects.push_back({"MemlendUnsatisfiedNeeds", *need + 2, false, ""});
  expects.push_back({"MemlendUnsatisfiedNeeds", *need + 12, true, of(run, "severity=\"warning\"")});
  expects.push_back({"MemlendDown", run.killed_at - 1, false, ""});
  expects.push_back({"MemlendDown", run.killed_at + 3, true, of(run, "severity=\"critical\"")});
  expects.push_back({"MemlendAbsent", run.killed_at + 3, false, ""});
  expects.push_back({"MemlendAbsent", run.killed_at + 19, true, "severity=\"critical\""});
  // A healthy datastore: the mirror never failed.
  expects.push_back({"MemlendMirrorFailed", *need + 12, false, ""});
  expect_promtool(dir, "run", promtool_file(run, expects));
}

BOOST_AUTO_TEST_CASE(a_datastore_too_full_for_the_mirror_fires_its_alert) {
  TempDir dir;
  FullDatastore datastore(dir.path + "/datastore");
  if (!datastore.mounted) {
    BOOST_TEST_MESSAGE("skipped: " << datastore.why << " (needs root)");
    return;
  }
  auto lent = [](const Scrape& s) { return Run::get(s, "memlend_leases{host=\"B\",state=\"active\"}") == 1; };
  auto failed = [](const Scrape& s) { return Run::get(s, "memlend_mirror_failures_total") >= 1; };
  auto done = [&](const Run& r) {
    auto f = r.first(failed);
    return f && r.scrapes.size() >= *f + 4;
  };
  Run run = record(dir, datastore.path, "full", done, 0);
  auto first_lent = run.first(lent);
  auto fail = run.first(failed);
  BOOST_TEST_REQUIRE(first_lent.has_value(), "B lent VM2 its lease");
  std::vector<Expect> expects;
  // The mirror can fail on its first write, in the scrape that sees the lease.
  if (*first_lent < *fail) expects.push_back({"MemlendMirrorFailed", *first_lent, false, ""});
  expects.push_back({"MemlendMirrorFailed", *fail + 2, true, of(run, "severity=\"critical\"")});
  expect_promtool(dir, "full", promtool_file(run, expects));
}

namespace {

// The shared datastore through bindfs, a FUSE filesystem, so that the test
// can make it hang as a stuck NFS server would: SIGSTOP to bindfs, and every
// write to the mirrors waits until SIGCONT.
struct HangingDatastore {
  std::string backing, path;
  std::optional<Child> bindfs;
  bool mounted = false, hung = false;
  std::string why;
  explicit HangingDatastore(const std::string& dir) : backing(dir + "/backing"), path(dir + "/datastore") {
    std::filesystem::create_directories(backing);
    std::filesystem::create_directories(path);
    std::string program = find_program("bindfs");
    BOOST_TEST_REQUIRE(!program.empty(), "bindfs is on PATH (packaging/test-packages.txt)");
    if (::access("/dev/fuse", R_OK | W_OK) != 0) {
      why = "/dev/fuse cannot be opened (needs root)";
      return;
    }
    bindfs.emplace(std::vector<std::string>{program, "-f", backing, path}, dir + "/bindfs");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!(mounted = is_mount()) && bindfs->running() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!mounted) why = "bindfs did not mount: " + bindfs->err();
  }
  bool is_mount() const {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line))
      if (line.find(" " + path + " ") != std::string::npos) return true;
    return false;
  }
  void hang() {
    ::kill(bindfs->pid(), SIGSTOP);
    hung = true;
  }
  void resume() {
    if (hung) ::kill(bindfs->pid(), SIGCONT);
    hung = false;
  }
  ~HangingDatastore() {
    resume();
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

// B lends VM2 48 GiB and stays up: the stall must last as long as the test
// takes to see it, which under load can outlast the main scenario's donor.
const char* lending_only = R"({
  "settings": { "sample_period_s": 10, "detect_samples": 2, "migrate_after_s": 86400 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 } ],
  "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 } ]
})";

// Twelve VMs, none of which needs anything: a steady stream of samples for
// the failpoint to crash their actors on, spread over all of them.
const char* quiet_cluster = R"({
  "settings": { "sample_period_s": 10, "detect_samples": 2 },
  "hosts": [ { "name": "A", "memory_mib": 65536, "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 65536, "cpu_mhz": 32000 },
             { "name": "C", "memory_mib": 65536, "cpu_mhz": 32000 } ],
  "vms": [ { "name": "V1", "host": "A", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V2", "host": "A", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V3", "host": "A", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V4", "host": "A", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V5", "host": "B", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V6", "host": "B", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V7", "host": "B", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V8", "host": "B", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V9", "host": "C", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V10", "host": "C", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V11", "host": "C", "memory_mib": 2048, "cpu_mhz": 1000 },
           { "name": "V12", "host": "C", "memory_mib": 2048, "cpu_mhz": 1000 } ],
  "events": []
})";

}  // namespace

BOOST_AUTO_TEST_CASE(a_datastore_that_hangs_fires_the_mirror_stalled_alert) {
  TempDir dir;
  HangingDatastore datastore(dir.path);
  if (!datastore.mounted) {
    BOOST_TEST_MESSAGE("skipped: " << datastore.why);
    return;
  }
  const std::string written = "memlend_datapath_mirror_written_bytes_total";
  const std::string lag = "memlend_datapath_mirror_lag_bytes";
  std::optional<std::size_t> hung_at;
  RecordOptions how;
  how.scenario = lending_only;
  // Hung once the mirror is being written: the lease's mirror file is made
  // before, on a datastore that answers.
  how.after_scrape = [&](const Run& r) {
    const Scrape& s = r.scrapes.back();
    if (!hung_at && Run::get(s, "memlend_leases{host=\"B\",state=\"active\"}") == 1 && Run::get(s, written) > 0) {
      datastore.hang();
      hung_at = r.scrapes.size() - 1;
    }
  };
  how.before_kill = [&] { datastore.resume(); };
  how.describe = [&](const Run& r) {
    std::ostringstream out;
    out << r.scrapes.size() << " scrapes, hung at " << (hung_at ? std::to_string(*hung_at) : "none")
        << "; lag/written from there:";
    for (std::size_t i = hung_at ? *hung_at : 0; i < r.scrapes.size(); ++i)
      out << ' ' << (r.scrapes[i].empty() ? std::string("failed")
                                          : std::to_string(static_cast<long long>(Run::get(r.scrapes[i], lag))) + "/" +
                                                std::to_string(static_cast<long long>(Run::get(r.scrapes[i], written))));
    return out.str();
  };
  // The stall as it stands: the longest run of scrapes up to the last, after
  // the hang, where memory waits for the mirror and the mirror does not
  // move. Writes the datastore took in before it stopped may still finish
  // after the hang, so the run starts where the mirror last moved; it must
  // last for the window and the `for:` (5m + 2m) and a minute more.
  auto stalled_from = [&](const Run& r) -> std::optional<std::size_t> {
    if (!hung_at || r.scrapes.empty()) return std::nullopt;
    std::size_t i = r.scrapes.size();
    const Scrape& last = r.scrapes.back();
    while (i > *hung_at + 1 && !r.scrapes[i - 1].empty() && Run::get(r.scrapes[i - 1], lag) > 0 &&
           Run::get(r.scrapes[i - 1], written) == Run::get(last, written))
      --i;
    if (i == r.scrapes.size()) return std::nullopt;
    return i;
  };
  auto done = [&](const Run& r) {
    auto from = stalled_from(r);
    return from && r.scrapes.size() >= *from + 8;
  };
  Run run = record(dir, datastore.path, "hang", done, 0, how);
  auto from = stalled_from(run);
  // The last scrape before the hang where the mirror moved: nothing stalled there.
  std::size_t moving = *hung_at;
  while (moving > 0 && !(Run::get(run.scrapes[moving], written) > Run::get(run.scrapes[moving - 1], written))) --moving;
  BOOST_TEST_REQUIRE(moving > 0, "the mirror was written before the datastore hung");
  std::vector<Expect> expects = {{"MemlendMirrorStalled", moving, false, ""},
                                 {"MemlendMirrorStalled", *from + 7, true, of(run, "severity=\"critical\"")},
                                 {"MemlendMirrorFailed", *from + 7, false, ""}};
  expect_promtool(dir, "hang", promtool_file(run, expects));
}

BOOST_AUTO_TEST_CASE(actors_that_keep_crashing_fire_the_restart_storm_alert) {
  TempDir dir;
  std::filesystem::create_directories(dir.path + "/datastore");
  std::string env = find_program("env");
  BOOST_TEST_REQUIRE(!env.empty());
  RecordOptions how;
  // Every 37th sample of any VM crashes its actor: with twelve VMs sampled
  // twice a second (20x), each crashes about once in 18 s, under the
  // supervisor's limit (more than 5 in a minute stops the controller), and
  // all together about every 1.5 s. A scrape every 2.5 s makes that more
  // than 5 restarts in each 5 minutes of promtool's clock.
  how.program = {env, "MEMLEND_FAILPOINTS=vm.sample=every:37", MEMLEND_FAILPOINTS_BINARY};
  how.scenario = quiet_cluster;
  how.pace = std::chrono::milliseconds(2500);
  const std::string restarts = "memlend_actor_restarts_total{kind=\"vm\"}";
  // More than 5 restarts between a scrape and the fourth before it, at
  // three scrapes in a row: increase() over 5m is then above 5 at three
  // evaluations, which the `for: 2m` asks for.
  auto storm = [&](const Run& r, std::size_t i) {
    return i >= 4 && !r.scrapes[i].empty() && !r.scrapes[i - 4].empty() &&
           Run::get(r.scrapes[i], restarts) - Run::get(r.scrapes[i - 4], restarts) > 5;
  };
  auto done = [&](const Run& r) {
    std::size_t n = r.scrapes.size();
    return n >= 3 && storm(r, n - 1) && storm(r, n - 2) && storm(r, n - 3);
  };
  Run run = record(dir, dir.path + "/datastore", "storm", done, 0, how);
  auto first = run.first([&](const Scrape& s) { return Run::get(s, restarts) > 0; });
  BOOST_TEST_REQUIRE(first.has_value(), "the failpoint crashed VM actors");
  std::vector<Expect> expects = {
      {"MemlendActorRestartStorm", *first, false, ""},
      {"MemlendActorRestartStorm", run.scrapes.size() - 1, true, of(run, "kind=\"vm\",severity=\"warning\"")},
      {"MemlendDown", run.scrapes.size() - 1, false, ""}};
  expect_promtool(dir, "storm", promtool_file(run, expects));
}
