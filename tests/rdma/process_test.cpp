// The data path across real processes: `memlend donor` and `memlend probe`
// as children, donors and recipients killed with SIGKILL mid-workload.
#define BOOST_TEST_MODULE rdma_process
#include <boost/test/unit_test.hpp>

#include "tests/support/child.hpp"
#include "tests/rdma/fixture.hpp"

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <csignal>
#include <fstream>
#include <mutex>
#include <sys/stat.h>
#include <thread>

using namespace memlend;
using namespace memlend::rdma;
using std::chrono::seconds;
using test::DonorProcess;
using test::last_json_line;

namespace {

const std::string binary = MEMLEND_BINARY;

// Waits (bounded) until `done` holds; false when it never did.
template <class F>
bool eventually(F done, seconds limit = seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

}  // namespace

BOOST_AUTO_TEST_CASE(probe_verifies_every_byte_through_a_donor_process) {
  test::TempDir dir("probe");
  DonorProcess donor(dir, "a");
  test::Child probe({binary, "probe", "--donor", donor.address, "--mib", "16", "--block-kib", "256", "--buffer-kib",
                     "1024", "--pattern", "random", "--passes", "2", "--secret-file", donor.secret_file,
                     "--transport", "tcp", "--json"});
  BOOST_TEST_REQUIRE(probe.wait(seconds(120)) == 0, probe.err());
  auto j = last_json_line(probe.out());
  BOOST_TEST(j["mismatches"].get<std::uint64_t>() == 0u);
  BOOST_TEST(j["bytes_verified"].get<std::uint64_t>() == 2u * (16u << 20));
  BOOST_TEST(j["faults"].get<std::uint64_t>() > 0u);
  BOOST_TEST(j["evictions"].get<std::uint64_t>() > 0u);
  for (const char* key : {"fault_p50_us", "fault_p99_us", "read_mib_s", "failovers", "backing"}) BOOST_TEST(j.contains(key));
  // The probe released its lease: the donor's pool is empty again.
  auto c = DonorClient::connect(donor.address, donor.secret);
  BOOST_TEST_REQUIRE(bool(c));
  BOOST_TEST(eventually([&] { return (*c)->stats()->granted_bytes == 0; }));
}

BOOST_AUTO_TEST_CASE(region_survives_kill_9_of_its_donor_then_rehomes) {
  test::TempDir dir("kill");
  auto first = std::make_unique<DonorProcess>(dir, "first");
  auto mirror = MirrorFile::open(dir.path(), "vm", 8 << 20, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  RegionConfig cfg;
  cfg.bytes = 8 << 20;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 1 << 20;
  cfg.mirror = *mirror;
  auto lease = first->grant(cfg.bytes);
  auto link = connect_link(lease, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(link));
  auto region = RemoteRegion::create(cfg, std::move(*link));
  BOOST_TEST_REQUIRE(bool(region));
  auto* p = static_cast<std::uint8_t*>((*region)->data());

  test::fill(p, cfg.bytes, 1);
  BOOST_TEST(test::check(p, cfg.bytes, 1) == 0u);
  // Mid-workload: half of the region rewritten, part of it still dirty in the buffer.
  test::fill(p, cfg.bytes / 2, 2);
  first->child->kill9();
  BOOST_TEST(first->child->wait(seconds(10)) == -SIGKILL);

  // Every byte reads back: the buffer's, and the mirror's for the rest.
  BOOST_TEST(test::check(p, cfg.bytes / 2, 2) == 0u);
  BOOST_TEST(test::check(p, cfg.bytes, 1, cfg.bytes / 2) == 0u);
  auto st = (*region)->stats();
  BOOST_TEST((st.state == RegionState::degraded));
  BOOST_TEST(st.failovers == 1u);
  BOOST_TEST(st.mirror_bytes_read > 0u);

  // Re-home to a new donor from the mirror's contents.
  DonorProcess second(dir, "second");
  auto fresh = second.grant(cfg.bytes);
  auto link2 = connect_link(fresh, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(link2));
  BOOST_TEST_REQUIRE(bool((*region)->rehome(std::move(*link2))));
  BOOST_TEST(((*region)->state() == RegionState::remote));
  BOOST_TEST_REQUIRE(bool((*region)->evict_all()));
  auto before = (*region)->stats();
  BOOST_TEST(test::check(p, cfg.bytes / 2, 2) == 0u);
  BOOST_TEST(test::check(p, cfg.bytes, 1, cfg.bytes / 2) == 0u);
  auto after = (*region)->stats();
  BOOST_TEST(after.bytes_read >= cfg.bytes);                       // all of it from the new donor
  BOOST_TEST(after.mirror_bytes_read == before.mirror_bytes_read);  // none from the mirror
  BOOST_TEST_REQUIRE(bool((*region)->detach()));
}

namespace {

// Starts a probe against `donor`, stops it (SIGSTOP) once it has verified a
// pass, kills the donor, lets the probe go on: the donor dies mid-run, and
// exactly then, whatever the machine's speed.
test::Child& probe_through_donor_death(DonorProcess& donor, std::unique_ptr<test::Child>& probe,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> argv{binary, "probe", "--donor", donor.address, "--mib", "16", "--block-kib", "256",
                                "--buffer-kib", "1024", "--passes", "3", "--secret-file", donor.secret_file,
                                "--transport", "tcp", "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  probe = std::make_unique<test::Child>(argv);
  BOOST_TEST_REQUIRE(!probe->wait_stderr("pass 1 of 3 verified", seconds(120)).empty(), probe->err());
  ::kill(probe->pid(), SIGSTOP);
  donor.child->kill9();
  BOOST_TEST(donor.child->wait(seconds(10)) == -SIGKILL);
  ::kill(probe->pid(), SIGCONT);
  return *probe;
}

}  // namespace

BOOST_AUTO_TEST_CASE(probe_with_a_mirror_carries_on_when_its_donor_is_killed) {
  test::TempDir dir("probemirror");
  DonorProcess donor(dir, "d");
  std::unique_ptr<test::Child> holder;
  auto& probe = probe_through_donor_death(donor, holder, {"--mirror-dir", dir.path()});
  BOOST_TEST_REQUIRE(probe.wait(seconds(120)) == 0, probe.err());
  auto j = last_json_line(probe.out());
  BOOST_TEST(j["mismatches"].get<std::uint64_t>() == 0u);
  BOOST_TEST(j["bytes_verified"].get<std::uint64_t>() == 3u * (16u << 20));
  BOOST_TEST(j["failovers"].get<std::uint64_t>() == 1u);
  BOOST_TEST(j["state"].get<std::string>() == "degraded");
  BOOST_TEST(probe.err().find("failover_to_mirror") != std::string::npos);
  // The probe's mirror is gone with it.
  BOOST_TEST(std::filesystem::is_empty(dir.path()) == false);  // the secret file stays
  for (auto& e : std::filesystem::directory_iterator(dir.path())) BOOST_TEST(e.path().extension() != ".mirror");
}

BOOST_AUTO_TEST_CASE(probe_without_a_mirror_fails_clearly_when_its_donor_is_killed) {
  test::TempDir dir("probelost");
  DonorProcess donor(dir, "d");
  std::unique_ptr<test::Child> holder;
  auto& probe = probe_through_donor_death(donor, holder, {});
  int status = probe.wait(seconds(120));
  BOOST_TEST(status == 1, "status " << status << ": " << probe.err());  // an error, not a hang (-1000) or a crash (< 0)
  BOOST_TEST(probe.err().find("donor is gone and there is no mirror") != std::string::npos, probe.err());
}

BOOST_AUTO_TEST_CASE(recipient_killed_donor_reclaims_and_mirror_is_deleted) {
  test::TempDir dir("recipient");
  std::mutex mu;
  std::condition_variable cv;
  bool reclaimed = false;
  std::string mirror;  // the control plane knows which mirror belongs to the lease
  ServerOptions o;
  o.reclaim_orphans = true;
  o.on_orphan = [&](std::uint64_t) {
    std::lock_guard<std::mutex> lock(mu);
    BOOST_TEST(bool(remove_mirror(mirror)));
    reclaimed = true;
    cv.notify_all();
  };
  test::LocalDonor donor(64 << 20, o);
  std::string secret_file = dir.path() + "/secret";
  {
    // The in-process donor's secret is random; hand it over as the file's hash would be.
    std::ofstream(secret_file) << "recipient test";
    donor.pool.reset();
    donor.server.reset();
    donor.secret = *load_secret_file(secret_file);
    donor.pool = *DonorPool::create(64 << 20, donor.secret);
    o.transport = TransportKind::tcp;
    donor.server = std::move(*DonorServer::start(donor.pool, o));
  }
  test::Child probe({binary, "probe", "--donor", donor.server->address(), "--mib", "16", "--block-kib", "256",
                     "--buffer-kib", "1024", "--passes", "1000", "--mirror-dir", dir.path(), "--secret-file",
                     secret_file, "--transport", "tcp"});
  BOOST_TEST_REQUIRE(!probe.wait_stderr("pass 1 of", seconds(120)).empty(), probe.err());
  {
    std::lock_guard<std::mutex> lock(mu);
    mirror = mirror_path(dir.path(), "probe-" + std::to_string(probe.pid()));
  }
  BOOST_TEST_REQUIRE(std::filesystem::exists(mirror));
  BOOST_TEST(donor.pool->stats().leases == 1u);
  probe.kill9();
  BOOST_TEST(probe.wait(seconds(10)) == -SIGKILL);
  std::unique_lock<std::mutex> lock(mu);
  BOOST_TEST_REQUIRE(cv.wait_for(lock, seconds(30), [&] { return reclaimed; }));
  auto st = donor.pool->stats();
  BOOST_TEST(st.leases == 0u);
  BOOST_TEST(st.resident_bytes == 0u);  // the memory went back to the OS
  BOOST_TEST(!std::filesystem::exists(mirror));
}

BOOST_AUTO_TEST_CASE(donor_process_reclaims_a_killed_probes_lease) {
  test::TempDir dir("cli-reclaim");
  DonorProcess donor(dir, "d");
  test::Child probe({binary, "probe", "--donor", donor.address, "--mib", "8", "--block-kib", "256", "--passes",
                     "1000", "--secret-file", donor.secret_file, "--transport", "tcp"});
  BOOST_TEST_REQUIRE(!probe.wait_stderr("pass 1 of", seconds(120)).empty(), probe.err());
  auto c = DonorClient::connect(donor.address, donor.secret);
  BOOST_TEST_REQUIRE(bool(c));
  BOOST_TEST((*c)->stats()->granted_bytes == (8u << 20));
  probe.kill9();
  probe.wait(seconds(10));
  BOOST_TEST(eventually([&] { return (*c)->stats()->granted_bytes == 0; }));
  BOOST_TEST(!donor.child->wait_stderr("reclaimed", seconds(10)).empty());
}

namespace {

std::string secret_file(const test::TempDir& dir, const std::string& name, const std::string& text, mode_t mode) {
  std::string path = dir.path() + "/" + name;
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
  return path;
}

}  // namespace

BOOST_AUTO_TEST_CASE(bad_flags_exit_2_with_one_line) {
  test::TempDir dir("flags");
  const std::string good = secret_file(dir, "good", "sixteen bytes ok", 0600);
  const std::vector<std::vector<std::string>> cases = {
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "0", "--insecure-test-bench"},
      {"donor", "--listen", "nowhere", "--pool-mib", "8", "--insecure-test-bench"},
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--transport", "carrier-pigeon", "--insecure-test-bench"},
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--secret-file", dir.path() + "/missing"},
      {"donor", "--pool-mib", "8", "--insecure-test-bench"},
      // A secret is required, and checked as the cluster's is: owner-only,
      // at least 16 bytes, a regular file.
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8"},
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--secret-file", secret_file(dir, "open", "sixteen bytes ok", 0640)},
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--secret-file", secret_file(dir, "short", "fifteen bytes!\n", 0600)},
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--secret-file", dir.path()},
      {"donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--secret-file", good, "--insecure-test-bench"},
      {"probe", "--donor", "127.0.0.1:1", "--mib", "-1"},
      {"probe", "--donor", "127.0.0.1:1", "--mib", "8", "--pattern", "zigzag"},
      {"probe", "--donor", "127.0.0.1:1", "--mib", "8", "--block-kib", "2"},
      {"probe", "--donor", "127.0.0.1:1", "--mib", "8", "--block-kib", "1024", "--buffer-kib", "512"},
      {"probe", "--donor", "127.0.0.1", "--mib", "8"},
      {"probe", "--donor", "127.0.0.1:1", "--mib", "8", "--passes", "0"},
  };
  for (auto args : cases) {
    args.insert(args.begin(), binary);
    test::Child c(args);
    int status = c.wait(seconds(30));
    std::string joined;
    for (auto& a : args) joined += a + " ";
    std::string err = c.err();
    BOOST_TEST(status == 2, joined);
    BOOST_TEST(err.rfind("memlend: ", 0) == 0u, joined << err);
    BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1, joined << err);
  }
}

BOOST_AUTO_TEST_CASE(donor_without_a_secret_serves_only_when_told_it_is_a_test_bench) {
  test::Child donor({binary, "donor", "--listen", "127.0.0.1:0", "--pool-mib", "8", "--transport", "tcp",
                     "--insecure-test-bench"});
  std::string line = donor.wait_stdout("listening on ", seconds(20));
  BOOST_TEST_REQUIRE(!line.empty(), "donor did not start: " << donor.err());
  BOOST_TEST(!donor.wait_stderr("warning: --insecure-test-bench", seconds(10)).empty(), donor.err());
  std::string address = line.substr(std::string("listening on ").size());
  address = address.substr(0, address.find(' '));
  // The probe's key without --secret-file is the bench's.
  test::Child probe({binary, "probe", "--donor", address, "--mib", "4", "--block-kib", "256", "--transport", "tcp"});
  BOOST_TEST(probe.wait(seconds(120)) == 0, probe.err());
}

BOOST_AUTO_TEST_CASE(unreachable_donor_is_an_error_not_a_hang) {
  test::Child c({binary, "probe", "--donor", "127.0.0.1:1", "--mib", "8"});
  BOOST_TEST(c.wait(seconds(60)) == 1);
  BOOST_TEST(c.err().rfind("memlend: ", 0) == 0u, c.err());
}

BOOST_AUTO_TEST_CASE(help_describes_the_commands) {
  for (const char* cmd : {"donor", "probe"}) {
    test::Child c({binary, cmd, "--help"});
    BOOST_TEST(c.wait(seconds(30)) == 0);
    BOOST_TEST(c.out().find("--secret-file") != std::string::npos);
  }
  test::Child c({binary, "donor", "--help"});
  BOOST_TEST(c.wait(seconds(30)) == 0);
  BOOST_TEST(c.out().find("--insecure-test-bench") != std::string::npos);
}
