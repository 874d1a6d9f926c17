#define BOOST_TEST_MODULE platform_migration
#include <boost/test/unit_test.hpp>

// Both sides of a live migration as each backend takes them, without a guest:
// the target readies itself (`receive`: qemu's incoming program, libvirt's
// advertised URI, exec's `incoming` hook) and the VM's node takes only the
// addresses it migrates over. An address comes from another node, so one
// that would make this node run a command or open a file is refused before
// any hypervisor is asked. The qemu migration itself runs against real guests
// in platform_qemu_test and guest_cluster_test.

#include "firmware_hooks/exec.hpp"
#include "firmware_hooks/libvirt.hpp"
#include "firmware_hooks/qemu.hpp"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using namespace memlend;
using namespace memlend::platform;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace memlend {
inline std::ostream& boost_test_print_type(std::ostream& os, ErrorCode code) { return os << to_string(code); }
}  // namespace memlend

namespace {

// What a program left behind when its deadline killed it is reaped here.
struct Subreaper {
  Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
};
BOOST_TEST_GLOBAL_FIXTURE(Subreaper);

struct Dir {
  Dir() {
    char t[] = "/tmp/memlend-migration-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() { fs::remove_all(path); }
  std::string script(const std::string& name, const std::string& body, mode_t mode = 0700) const {
    std::string p = path + "/" + name;
    std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string path;
};

std::unique_ptr<NodePlatform> qemu(const Dir& d, const std::string& program) {
  QemuOptions o;
  o.qmp_dir = d.path;
  o.incoming_program = program;
  o.incoming_timeout = 1s;
  o.log = [](const std::string&) {};
  return make_qemu(o);
}

template <class T>
void refused(const Expected<T>& r, ErrorCode code, const std::string& says) {
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST(r.error().code == code);
  BOOST_TEST(r.error().message.find(says) != std::string::npos, r.error().message);
  BOOST_TEST(r.error().message.find('\n') == std::string::npos, r.error().message);
}

}  // namespace

BOOST_AUTO_TEST_CASE(qemu_receives_a_vm_through_its_incoming_program) {
  Dir d;
  std::string program = d.script("incoming", "echo \"$1\" > " + d.path + "/asked\necho tcp:10.0.0.2:4444\necho more");
  auto got = qemu(d, program)->receive("web-1");
  BOOST_TEST_REQUIRE(static_cast<bool>(got), (got ? "" : got.error().message));
  BOOST_TEST(*got == "tcp:10.0.0.2:4444");
  BOOST_TEST(d.read("asked") == "web-1\n");
  auto v6 = qemu(d, d.script("v6", "echo 'tcp:[fd00::2]:4444'"))->receive("web-1");
  BOOST_TEST_REQUIRE(static_cast<bool>(v6));
  BOOST_TEST(*v6 == "tcp:[fd00::2]:4444");
}

BOOST_AUTO_TEST_CASE(qemu_refuses_what_its_incoming_program_did_not_do) {
  Dir d;
  refused(qemu(d, "")->receive("web-1"), ErrorCode::refused, "not set up to receive migrations");
  refused(qemu(d, d.script("fails", "echo no room for web-1; exit 3"))->receive("web-1"), ErrorCode::refused,
          "exit status 3): 'no room for web-1'");
  refused(qemu(d, d.script("exec", "echo 'exec:touch /tmp/x'"))->receive("web-1"), ErrorCode::refused,
          "not tcp:HOST:PORT");
  refused(qemu(d, d.script("garbage", "printf '\\001\\377tcp:\\n'"))->receive("web-1"), ErrorCode::refused,
          "not tcp:HOST:PORT");
  refused(qemu(d, d.script("silent", "true"))->receive("web-1"), ErrorCode::refused, "not tcp:HOST:PORT");
  refused(qemu(d, d.script("hangs", "sleep 60"))->receive("web-1"), ErrorCode::timed_out, "no answer within 1000 ms");
  refused(qemu(d, d.script("loose", "echo tcp:10.0.0.2:1", 0777))->receive("web-1"), ErrorCode::invalid_input,
          "writable by its group or by others");
  refused(qemu(d, d.path + "/absent")->receive("web-1"), ErrorCode::unavailable, "absent");
  refused(qemu(d, d.script("fine", "echo tcp:10.0.0.2:1"))->receive("../web-1"), ErrorCode::invalid_input,
          "no VM may be named");
}

BOOST_AUTO_TEST_CASE(qemu_migrates_over_tcp_and_rdma_only) {
  Dir d;
  auto p = qemu(d, "");
  for (const char* bad : {"exec:touch /tmp/memlend-pwned", "unix:/run/x.sock", "fd:3", "file:/etc/passwd",
                          "tcp:10.0.0.2", "tcp:10.0.0.2:0", "tcp:10.0.0.2:65536", "tcp:-oops:4444",
                          "tcp:host name:4444", "tcp:[::1:4444", "", "tcp:10.0.0.2:4444,x=y"})
    refused(p->migrate("web-1", MigrationTarget{"b", bad}), ErrorCode::invalid_input, "migrating VM 'web-1'");
  BOOST_TEST(!fs::exists("/tmp/memlend-pwned"));
  // A good address gets as far as the VM, which this node does not run.
  for (const char* good : {"tcp:10.0.0.2:4444", "rdma:node-b.example:4444", "tcp:[fd00::2]:4444"})
    refused(p->migrate("web-1", MigrationTarget{"b", good}), ErrorCode::refused, "no VM 'web-1'");
}

BOOST_AUTO_TEST_CASE(libvirt_advertises_its_uri_and_migrates_to_plain_ones_only) {
  LibvirtOptions o;
  o.uri = "test:///default";
  o.warn = [](const std::string&) {};
  auto none = make_libvirt(o);
  BOOST_TEST_REQUIRE(static_cast<bool>(none), (none ? "" : none.error().message));
  refused((*none)->receive("test"), ErrorCode::refused, "not set up to receive migrations");
  o.migrate_uri = "qemu+tls://node-b.example/system";
  auto set = make_libvirt(o);
  BOOST_TEST_REQUIRE(static_cast<bool>(set));
  auto uri = (*set)->receive("test");
  BOOST_TEST_REQUIRE(static_cast<bool>(uri));
  BOOST_TEST(*uri == "qemu+tls://node-b.example/system");
  for (const char* bad : {"qemu+ext:///system?command=/bin/sh", "qemu+ssh://b/system?keyfile=/etc/shadow",
                          "qemu+ssh://b/system?command=/bin/sh", "qemu:///system", "qemu+unix:///system",
                          "qemu+tls://b/sys tem", "test:///default"})
    refused((*set)->migrate("test", MigrationTarget{"b", bad}), ErrorCode::invalid_input, "libvirt: migrate 'test'");
}

BOOST_AUTO_TEST_CASE(exec_receives_through_its_optional_incoming_hook) {
  Dir d;
  ::chmod(d.path.c_str(), 0755);
  ExecOptions o;
  o.hooks_dir = d.path;
  o.timeout = 2s;
  auto p = make_exec(o);
  BOOST_TEST_REQUIRE(static_cast<bool>(p), (p ? "" : p.error().message));
  // No `incoming` hook: the vendor's `migrate` hook does all, with no address.
  auto plain = (*p)->receive("web-1");
  BOOST_TEST_REQUIRE(static_cast<bool>(plain), (plain ? "" : plain.error().message));
  BOOST_TEST(plain->empty());
  d.script("incoming", "echo \"fabric-b:$1\"");
  auto addressed = (*p)->receive("web-1");
  BOOST_TEST_REQUIRE(static_cast<bool>(addressed), (addressed ? "" : addressed.error().message));
  BOOST_TEST(*addressed == "fabric-b:web-1");
  d.script("incoming", "echo busy; exit 1");
  refused((*p)->receive("web-1"), ErrorCode::refused, "exec hook incoming refused: exit status 1: busy");
  d.script("incoming", "printf -- '-rf\\n'");
  refused((*p)->receive("web-1"), ErrorCode::refused, "starts with '-'");
}
