#define BOOST_TEST_MODULE service_unit
#include <boost/test/unit_test.hpp>

// The shipped unit's hardening: systemd's own score of it, and memlend run
// with no more than the unit grants. Without systemd as PID 1 the unit cannot
// be started here, so its grants are rebuilt from its own lines with the
// tools that make them: setpriv for the user, capabilities and
// no-new-privileges, a private mount namespace for the udev rule's
// /dev/userfaultfd and for ProtectProc=, and strace for SystemCallFilter=,
// refusing every system call the filter would refuse with the unit's errno.
// Real processes, a real store, real TLS and the real data path.

#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <poll.h>
#include <pwd.h>
#include <grp.h>
#include <regex>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using memlend::test::Child;
using memlend::test::find_program;
using memlend::test::make_temp_dir;
using memlend::test::read_file;
using memlend::test::run_process;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string source_dir = MEMLEND_SOURCE_DIR;
const std::string unit_path = source_dir + "/packaging/memlend.service";

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The [Service] lines of the unit, each key's values in order. An empty
// assignment resets a list, as systemd reads it.
std::map<std::string, std::vector<std::string>> service_section(const std::string& path) {
  std::map<std::string, std::vector<std::string>> keys;
  std::istringstream in(read_file(path));
  bool service = false;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] == '[') service = line == "[Service]";
    auto eq = line.find('=');
    if (!service || line.empty() || line[0] == '#' || eq == std::string::npos) continue;
    auto& values = keys[line.substr(0, eq)];
    std::string value = line.substr(eq + 1);
    if (value.empty()) values.clear();
    values.push_back(value);
  }
  return keys;
}

std::string only(const std::map<std::string, std::vector<std::string>>& keys, const std::string& key) {
  auto it = keys.find(key);
  return it == keys.end() || it->second.empty() ? std::string() : it->second.back();
}

// systemd's system call groups (`systemd-analyze syscall-filter`), each
// expanded to the calls it holds, groups within it included.
class SyscallGroups {
 public:
  explicit SyscallGroups(const std::string& listing) {
    std::istringstream in(listing);
    std::string group;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("@", 0) == 0) {
        group = line;
      } else if (line.rfind("    ", 0) == 0 && !group.empty()) {
        auto name = line.substr(4);
        if (!name.empty() && name[0] != '#') members_[group].push_back(name);
      } else {
        group.clear();
      }
    }
  }
  std::set<std::string> expand(const std::string& item) const {
    std::set<std::string> out;
    if (item.empty() || item[0] != '@') {
      out.insert(item);
      return out;
    }
    auto it = members_.find(item);
    BOOST_TEST_REQUIRE((it != members_.end()), "systemd knows the group " << item);
    for (const auto& m : it->second) {
      auto sub = expand(m);
      out.insert(sub.begin(), sub.end());
    }
    return out;
  }

 private:
  std::map<std::string, std::vector<std::string>> members_;
};

// What the unit's SystemCallFilter= lines allow: an allow-list first, from
// which the ~ lines take calls away.
std::set<std::string> allowed_syscalls(const std::vector<std::string>& lines, const SyscallGroups& groups) {
  std::set<std::string> allowed;
  BOOST_TEST_REQUIRE(!lines.empty());
  BOOST_TEST_REQUIRE(lines.front()[0] != '~', "the unit's first SystemCallFilter= is an allow-list");
  for (const auto& line : lines) {
    bool deny = line[0] == '~';
    for (const auto& item : words(deny ? line.substr(1) : line))
      for (const auto& call : groups.expand(item)) {
        if (deny) allowed.erase(call);
        else allowed.insert(call);
      }
  }
  return allowed;
}

// A uid and gid no account has, standing for the unit's User= and Group=,
// which need not exist on the machine that runs the tests.
std::pair<uid_t, gid_t> unused_ids() {
  for (uid_t id = 64990; id > 60000; --id)
    if (!::getpwuid(id) && !::getgrgid(id)) return {id, id};
  BOOST_FAIL("no free uid between 60000 and 64990");
  return {};
}

// systemd's notification socket as the service would find it: any user may
// send to it, and it is read as the datagrams come (a full one would block
// the sender, as systemd never lets it).
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    BOOST_TEST_REQUIRE(path.size() < sizeof a.sun_path);
    std::copy(path.begin(), path.end(), a.sun_path);
    BOOST_TEST_REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    ::chmod(path.c_str(), 0777);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        std::lock_guard<std::mutex> lock(mu_);
        if (n > 0) all_.append(buf, static_cast<std::size_t>(n)).append("\n");
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    ::close(fd_);
  }
  std::string received() {
    std::lock_guard<std::mutex> lock(mu_);
    return all_;
  }
  std::string path;

 private:
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string all_;
  std::thread reader_;
};

// memlend as the unit runs it, but for the working directory, which stands
// for StateDirectory=: a scratch directory owned by the unit's user.
class AsTheUnit {
 public:
  // `udev_rule`: false leaves the devices as a machine without the package's rule has them.
  explicit AsTheUnit(bool udev_rule = true) {
    auto unit = service_section(unit_path);
    std::tie(uid, gid) = unused_ids();
    BOOST_TEST_REQUIRE(only(unit, "User") == "memlend");
    BOOST_TEST_REQUIRE(only(unit, "Group") == "memlend");
    fs::permissions(dir, fs::perms(0755));
    mkdir_owned(state, 0700);
    mkdir_owned(trace_dir, 0700);

    // The devices the unit allows, as the package's udev rule leaves them.
    auto rule = read_file(source_dir + "/packaging/memlend.rules");
    std::smatch m;
    std::string device_script;
    for (const auto& allow : unit["DeviceAllow"]) {
      auto [path, access] = std::make_pair(words(allow).at(0), words(allow).at(1));
      BOOST_TEST_REQUIRE(path == "/dev/userfaultfd", "a device the test knows how to grant: " << allow);
      BOOST_TEST(access == "rw");
      static const std::regex granted(R"re(KERNEL=="userfaultfd".*GROUP="([a-z]+)", MODE="(0[0-7]+)")re");
      BOOST_TEST_REQUIRE(std::regex_search(rule, m, granted), rule);
      struct stat real {};
      BOOST_TEST_REQUIRE(::stat(path.c_str(), &real) == 0, path << " is on this machine (Linux 6.1+)");
      std::string node = dir + "/userfaultfd";
      BOOST_TEST_REQUIRE(::mknod(node.c_str(), S_IFCHR | 0600, real.st_rdev) == 0, "mknod " << node);
      if (udev_rule) {
        BOOST_TEST_REQUIRE(::chown(node.c_str(), 0, m[1] == only(unit, "Group") ? gid : 0) == 0);
        BOOST_TEST_REQUIRE(::chmod(node.c_str(), static_cast<mode_t>(std::stoul(m[2], nullptr, 8))) == 0);
      }
      device_script += "mount --bind " + node + " " + path + " && ";
    }
    if (only(unit, "ProtectProc") == "invisible")
      device_script += "mount -t proc -o hidepid=invisible proc /proc && ";
    setup = device_script + "exec \"$@\"";

    // The capabilities: none unless the unit names them, and then only those.
    auto caps = [&](const std::string& key) {
      std::string list;
      for (const auto& c : words(only(unit, key))) {
        std::string name = c.substr(c.rfind("CAP_", 0) == 0 ? 4 : 0);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        list += ",+" + name;
      }
      return list;
    };
    BOOST_TEST_REQUIRE(unit.count("CapabilityBoundingSet") == 1u, "the unit bounds its capabilities");
    setpriv = {find_program("setpriv"), "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(gid),
               "--clear-groups", "--inh-caps=-all" + caps("AmbientCapabilities"),
               "--ambient-caps=-all" + caps("AmbientCapabilities"),
               "--bounding-set=-all" + caps("CapabilityBoundingSet")};
    BOOST_TEST_REQUIRE(only(unit, "NoNewPrivileges") == "yes");
    setpriv.push_back("--no-new-privs");

    // The system call filter: strace refuses what it would, with its errno.
    auto listing = run_process({find_program("systemd-analyze"), "syscall-filter"}, 60);
    BOOST_TEST_REQUIRE(listing.status == 0, listing.err);
    SyscallGroups groups(listing.out);
    std::string allow;
    // "?": a call this architecture lacks (systemd lists every architecture's) is no error to strace.
    for (const auto& call : allowed_syscalls(unit["SystemCallFilter"], groups))
      allow += (allow.empty() ? "?" : ",?") + call;
    std::string errno_name = only(unit, "SystemCallErrorNumber");
    BOOST_TEST_REQUIRE(!errno_name.empty(), "the unit says how a refused call fails");
    strace = {find_program("strace"), "-f", "-qq", "-o", trace_dir + "/trace",
              "-e", "inject=!" + allow + ":error=" + errno_name};
    families = words(only(unit, "RestrictAddressFamilies"));
  }
  ~AsTheUnit() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  std::vector<std::string> command(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{"/usr/bin/env", "NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=30000000",
                                  find_program("unshare"), "--mount", "--propagation", "private", "--",
                                  "/bin/sh", "-c", setup, "sh"};
    argv.insert(argv.end(), setpriv.begin(), setpriv.end());
    argv.push_back("--");
    argv.insert(argv.end(), strace.begin(), strace.end());
    argv.push_back(bin);
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // The system calls the filter refused, each with how often; and the
  // address families asked for that the unit does not allow.
  std::map<std::string, int> refused() const {
    std::map<std::string, int> out;
    std::istringstream in(read_file(trace_dir + "/trace"));
    std::smatch m;
    static const std::regex call(R"(^\d+ +(?:<\.\.\. )?([a-z0-9_]+)[( ])");
    for (std::string line; std::getline(in, line);)
      if (line.find("(INJECTED)") != std::string::npos && std::regex_search(line, m, call)) ++out[m[1]];
    return out;
  }
  std::set<std::string> foreign_sockets() const {
    std::set<std::string> out;
    std::istringstream in(read_file(trace_dir + "/trace"));
    std::smatch m;
    static const std::regex socket(R"(socket\((AF_[A-Z0-9]+), [^,]+, ([A-Z_0-9]+))");
    for (std::string line; std::getline(in, line);)
      if (std::regex_search(line, m, socket) &&
          std::find(families.begin(), families.end(), m[1].str()) == families.end())
        out.insert(m[1].str() + " " + m[2].str());
    return out;
  }

  // memlend's own words for what the filter refused that it may refuse, and
  // the one family it may ask for and be refused: anything else is news.
  void check_refusals() const {
    static const std::map<std::string, std::string> tolerated{
        {"set_mempolicy", "libnuma, loaded with libvirt, probes it at load and takes EPERM as no support"}};
    for (const auto& [call, times] : refused()) {
      auto known = tolerated.find(call);
      BOOST_TEST_MESSAGE("refused " << call << " " << times << " times"
                                    << (known == tolerated.end() ? "" : ": " + known->second));
      BOOST_TEST((known != tolerated.end()),
                 "the unit's filter refuses " << call << " (" << times
                                              << " times): allow it, or show that memlend copes");
    }
    for (const auto& s : foreign_sockets())
      // rdma-core looks for RDMA devices over netlink; refused, it finds none,
      // and the controller's data path is TCP.
      BOOST_TEST(s == "AF_NETLINK NETLINK_RDMA", "socket(" << s << ") outside RestrictAddressFamilies=");
  }

  std::string dir = make_temp_dir("service-unit");
  std::string state = dir + "/state";
  std::string trace_dir = dir + "/trace";
  uid_t uid = 0;
  gid_t gid = 0;
  NotifySocket notify{dir + "/notify"};

 private:
  void mkdir_owned(const std::string& path, mode_t mode) const {
    fs::create_directories(path);
    BOOST_TEST_REQUIRE(::chown(path.c_str(), uid, gid) == 0);
    BOOST_TEST_REQUIRE(::chmod(path.c_str(), mode) == 0);
  }
  std::string setup;
  std::vector<std::string> setpriv, strace, families;
};

// Making another user's process, a device node and a mount namespace takes
// root; setpriv, unshare and strace do it, and the build must be reachable
// by a user that is not its owner.
boost::test_tools::assertion_result can_sandbox(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result ok(true);
  if (::geteuid() != 0) {
    ok = false;
    ok.message() << "running memlend as another user with the unit's grants needs root";
    return ok;
  }
  for (const char* tool : {"setpriv", "unshare", "strace", "systemd-analyze"})
    if (find_program(tool).empty()) {
      ok = false;
      ok.message() << tool << " is not installed (packaging/test-packages.txt: packaging/build.sh deps)";
      return ok;
    }
  auto reach = run_process({find_program("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                            "/usr/bin/test", "-x", bin},
                           30);
  if (reach.status != 0) {
    ok = false;
    ok.message() << bin << " cannot be run by another user (a directory on its path is not searchable)";
  }
  return ok;
}

boost::test_tools::assertion_result has_systemd_analyze(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result ok(!find_program("systemd-analyze").empty());
  ok.message() << "systemd-analyze is not installed (Debian's systemd package)";
  return ok;
}

// The guest workload's last words for each VM, and that none went without its data path.
void check_data_path(const std::string& out) {
  BOOST_TEST(out.find("has no data path") == std::string::npos, out);
  std::regex checked("the guest workload of (VM[0-9]+) wrote [0-9]+ KiB of its remote memory and read back [0-9]+ "
                     "KiB: 0 words wrong");
  std::set<std::string> vms;
  for (std::sregex_iterator it(out.begin(), out.end(), checked), end; it != end; ++it) vms.insert((*it)[1]);
  BOOST_TEST(vms.size() == 4u, out);
}

}  // namespace

// Both units, the controller's and the agent's (root, for the hypervisor's
// sockets and the FUSE mount QEMU must see, so it rates worse but still OK).
BOOST_AUTO_TEST_CASE(systemd_rates_the_units_ok_or_better, *boost::unit_test::precondition(has_systemd_analyze)) {
  for (const std::string& unit : {unit_path, source_dir + "/packaging/memlend-agent.service"}) {
    auto r = run_process({find_program("systemd-analyze"), "security", "--offline=yes", "--no-pager", unit}, 120);
    BOOST_TEST_REQUIRE(r.status == 0, r.out << r.err);
    std::smatch m;
    BOOST_TEST_REQUIRE(
        std::regex_search(r.out, m, std::regex(R"(Overall exposure level for \S+: ([0-9.]+) ([A-Z]+))")), r.out);
    BOOST_TEST_MESSAGE("systemd-analyze security " << unit << ": " << m[1] << " " << m[2]);
    // systemd's words from best to worst: PERFECT, SAFE, OK, MEDIUM, EXPOSED, UNSAFE, DANGEROUS.
    std::set<std::string> good{"PERFECT", "SAFE", "OK"};
    BOOST_TEST(good.count(m[2]) == 1u, unit << ": exposure " << m[1] << " " << m[2] << ":\n" << r.out);
  }
}

BOOST_AUTO_TEST_CASE(the_service_runs_its_demo_and_data_path_with_only_what_the_unit_grants,
                     *boost::unit_test::precondition(can_sandbox)) {
  AsTheUnit unit;
  std::string config = source_dir + "/packaging/memlend.conf";
  // ExecStartPre=, then ExecStart= (the built-in demo with the shipped
  // config), shortened and on a free metrics port.
  auto check = run_process(unit.command({"check-config", "--config", config}), 60, unit.state);
  BOOST_TEST_REQUIRE(check.status == 0, check.out << check.err);
  Child::Options in_state;
  in_state.workdir = unit.state;
  Child run(unit.command({"run", "--config", config, "--for", "1200s", "--speed", "200", "--metrics", "127.0.0.1:0"}),
            in_state);
  std::string serving = run.wait_stderr("serving metrics at http://127.0.0.1:", 60s);
  BOOST_TEST_REQUIRE(!serving.empty(), run.out() << run.err());
  std::smatch m;
  BOOST_TEST_REQUIRE(std::regex_search(serving, m, std::regex(R"(127\.0\.0\.1:([0-9]+)/metrics)")), serving);
  auto scrape = memlend::test::http_get("127.0.0.1", static_cast<std::uint16_t>(std::stoi(m[1])), "/metrics");
  BOOST_TEST(scrape.status == 200, scrape.error);
  // Its own /proc entries are what it reads there; ProtectProc= hides only the others'.
  BOOST_TEST(scrape.body.find("process_start_time_seconds") != std::string::npos);
  int status = run.wait(120s);
  BOOST_TEST_REQUIRE(status == 0, run.out() << run.err());
  check_data_path(run.out() + run.err());
  BOOST_TEST(unit.notify.received().find("READY=1") != std::string::npos);
  // The store, as the service keeps it, belongs to the service's user.
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat((unit.state + "/memlend.db").c_str(), &st) == 0);
  BOOST_TEST(st.st_uid == unit.uid);
  BOOST_TEST((st.st_mode & 077) == 0u);
  unit.check_refusals();
}

BOOST_AUTO_TEST_CASE(without_the_udev_rule_the_data_path_says_what_it_lacks,
                     *boost::unit_test::precondition(can_sandbox)) {
  AsTheUnit unit(false);
  auto r = run_process(unit.command({"run", "--for", "1200s", "--speed", "200", "--metrics", "off", "--no-db"}), 120,
                       unit.state);
  BOOST_TEST(r.status == 0, r.err);
  std::string said = "lease 1 of VM2 has no data path: region for VM2: userfaultfd (needs /dev/userfaultfd access";
  BOOST_TEST(r.out.find(said) != std::string::npos, r.out << r.err);
}

namespace {

const char* cluster_scenario = R"({
  "settings": { "sample_period_s": 10, "detect_samples": 3, "migrate_after_s": 6000 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 } ],
  "events": [ { "at_s": 20, "vm": "VM2", "memory_mib": 32768 } ]
})";

}  // namespace

BOOST_AUTO_TEST_CASE(the_service_takes_agents_over_tls_with_only_what_the_unit_grants,
                     *boost::unit_test::precondition(can_sandbox)) {
  AsTheUnit unit;
  // The cluster's files, as an operator installs them for the service: the
  // key and the secret belong to its user, mode 0600.
  std::string pki = unit.dir + "/pki";
  fs::create_directories(pki);
  fs::permissions(pki, fs::perms(0755));
  auto openssl = [](std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    auto r = run_process(args, 60);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
  };
  openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca", "-keyout",
           pki + "/ca.key", "-out", pki + "/ca.pem"});
  for (const char* n : {"ctrl", "A", "B"}) {
    std::string p = pki + "/" + n;
    openssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", std::string("/CN=") + n, "-keyout", p + ".key", "-out",
             p + ".csr"});
    openssl({"x509", "-req", "-days", "2", "-in", p + ".csr", "-CA", pki + "/ca.pem", "-CAkey", pki + "/ca.key",
             "-CAcreateserial", "-out", p + ".pem"});
    ::chmod((p + ".pem").c_str(), 0644);
  }
  ::chmod((pki + "/ca.pem").c_str(), 0644);
  std::ofstream(pki + "/secret") << "a cluster secret of some length\n";
  for (const char* own : {"/secret", "/ctrl.key"}) {
    BOOST_TEST_REQUIRE(::chown((pki + own).c_str(), unit.uid, unit.gid) == 0);
    BOOST_TEST_REQUIRE(::chmod((pki + own).c_str(), 0600) == 0);
  }
  std::string scenario = pki + "/scenario.json";
  std::ofstream(scenario) << cluster_scenario;
  ::chmod(scenario.c_str(), 0644);

  Child::Options in_state;
  in_state.workdir = unit.state;
  Child controller(unit.command({"run", "--scenario", scenario, "--speed", "10", "--for", "120", "--events-out",
                                 "events.jsonl", "--listen", "127.0.0.1:0", "--cluster", "c1", "--cluster-secret-file",
                                 pki + "/secret", "--tls-ca", pki + "/ca.pem", "--tls-cert", pki + "/ctrl.pem",
                                 "--tls-key", pki + "/ctrl.key", "--metrics", "off"}),
                   in_state);
  std::string listening = controller.wait_stdout("listening on 127.0.0.1:", 60s);
  BOOST_TEST_REQUIRE(!listening.empty(), controller.out() << controller.err());
  std::string port = listening.substr(listening.rfind(':') + 1);
  std::vector<std::unique_ptr<Child>> agents;
  for (const char* h : {"A", "B"}) {
    Child::Options o;
    o.workdir = pki;
    agents.push_back(std::make_unique<Child>(
        std::vector<std::string>{bin, "agent", "--controller", "127.0.0.1:" + port, "--host", h, "--scenario", scenario,
                                 "--listen", "127.0.0.1:0", "--cluster", "c1", "--cluster-secret-file", pki + "/secret",
                                 "--tls-ca", pki + "/ca.pem", "--tls-cert", pki + "/" + h + ".pem", "--tls-key",
                                 pki + "/" + h + ".key", "--metrics", "off", "--datastore", pki + "/datastore"},
        o));
  }
  int status = controller.wait(180s);
  for (auto& a : agents) a->stop();
  BOOST_TEST_REQUIRE(status == 0, controller.out() << controller.err());
  for (const char* h : {"A", "B"})
    BOOST_TEST(controller.out().find(std::string("agent for ") + h + " joined") != std::string::npos, controller.out());
  BOOST_TEST(read_file(unit.state + "/events.jsonl").find("\"event\":\"lease_granted\"") != std::string::npos,
             controller.out());
  unit.check_refusals();
}
