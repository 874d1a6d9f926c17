#define BOOST_TEST_MODULE libvirt_platform
#include <boost/test/unit_test.hpp>

// The libvirt backend against libvirt's own test driver, which runs inside
// this process: `test:///default` (libvirt's built-in node) and a node file
// of this directory. What the test driver cannot do (device updates,
// migration) is tested as what it is: a clean refusal that changes nothing.

#include "firmware_hooks/libvirt.hpp"

#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

#include <string>

using namespace memlend;
using namespace memlend::platform;

namespace {

const std::string node_file_uri = "test://" + std::string(MEMLEND_SOURCE_DIR) + "/tests/platform/libvirt_node.xml";

std::unique_ptr<NodePlatform> open(const std::string& uri) {
  LibvirtOptions o;
  o.uri = uri;
  o.host_name = "node-a";
  auto p = make_libvirt(o);
  BOOST_TEST_REQUIRE(bool(p), (p ? "" : p.error().message));
  return std::move(*p);
}

NodeReading reading(NodePlatform& p) {
  auto r = p.read();
  BOOST_TEST_REQUIRE(bool(r), (r ? "" : r.error().message));
  return *r;
}

const VmReading& vm(const NodeReading& r, const std::string& name) {
  for (const auto& v : r.vms)
    if (v.name == name) return v;
  BOOST_FAIL("no VM " << name);
  static const VmReading none;
  return none;
}

bool is_one_line(const std::string& s) { return !s.empty() && s.find('\n') == std::string::npos; }

void require_refused(const Expected<void>& e, const std::string& reason) {
  BOOST_TEST_REQUIRE(!e);
  BOOST_TEST(e.error().message.find(reason) != std::string::npos, e.error().message);
  BOOST_TEST(to_string(e.error().code) == to_string(ErrorCode::refused));
  BOOST_TEST(is_one_line(e.error().message));
}

// What the platform plugs and reports of a VM, for "unchanged".
std::string summary(const VmReading& v) {
  return std::to_string(v.memory_mib) + "/" + std::to_string(v.plugged_mib) + "/" + std::to_string(v.pluggable_mib) +
         "/" + std::to_string(v.balloon_mib.value_or(-1)) + "/" + std::to_string(v.running);
}

LentMemory lent(std::int64_t mib) { return LentMemory{"lease-1", "donor-b", "10.0.0.2:7000", mib}; }

}  // namespace

BOOST_AUTO_TEST_CASE(reads_the_default_test_node) {
  auto p = open("test:///default");
  BOOST_TEST(p->backend() == "libvirt");
  NodeReading r = reading(*p);
  BOOST_TEST(r.host.name == "node-a");
  BOOST_TEST(r.host.memory_mib == 3072);
  BOOST_TEST(r.host.cpus == 16);
  BOOST_TEST(r.host.cpu_mhz == 16 * 1400);
  // The test driver has no node memory statistics, and its free memory, its
  // cells' 3145728 KiB, comes out of virNodeGetFreeMemory as that many bytes.
  BOOST_TEST(r.host.available_mib == 3);
  // Its fixed CPU times: user 9.7974 s, kernel 34678.7234 s, idle 87.2649 s, iowait 0.7636 s.
  BOOST_TEST_REQUIRE(r.host.cpu_busy_s.has_value());
  BOOST_TEST_REQUIRE(r.host.cpu_total_s.has_value());
  BOOST_TEST(*r.host.cpu_busy_s == 34688.5208, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(*r.host.cpu_total_s == 34776.5493, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(!r.host.memory_pressure_some.has_value());
  BOOST_TEST_REQUIRE(r.vms.size() == 1u);
  const VmReading& v = r.vms[0];
  BOOST_TEST(v.name == "test");
  BOOST_TEST(v.running);
  BOOST_TEST(v.vcpus == 2);
  BOOST_TEST(v.memory_mib == 8192);
  BOOST_TEST(v.plugged_mib == 0);
  BOOST_TEST(v.pluggable_mib == 0);
  BOOST_TEST(v.balloon_mib.value_or(-1) == 2048);
  // The test driver's fixed balloon statistics.
  BOOST_TEST(v.guest_available_mib.value_or(-1) == 1024);
  BOOST_TEST(v.guest_free_mib.value_or(-1) == 1024);
  BOOST_TEST(v.rss_mib.value_or(-1) == 1024);
  BOOST_TEST(v.swap_in.value_or(99) == 0u);
  BOOST_TEST(v.swap_out.value_or(99) == 0u);
  BOOST_TEST(v.major_faults.value_or(99) == 0u);
  BOOST_TEST(v.cpu_s.has_value());
}

BOOST_AUTO_TEST_CASE(the_host_name_is_libvirts_unless_configured) {
  LibvirtOptions o;
  o.uri = "test:///default";
  auto p = make_libvirt(o);
  BOOST_TEST_REQUIRE(bool(p));
  auto r = (*p)->read();
  BOOST_TEST_REQUIRE(bool(r));
  BOOST_TEST(!r->host.name.empty());
}

BOOST_AUTO_TEST_CASE(reads_a_node_file_with_a_virtio_mem_vm) {
  auto p = open(node_file_uri);
  NodeReading r = reading(*p);
  BOOST_TEST(r.host.memory_mib == 16384);
  BOOST_TEST(r.host.cpus == 16);
  BOOST_TEST(r.host.cpu_mhz == 16 * 2400);
  // The test driver reports no free memory for a node file: none is offered.
  BOOST_TEST(r.host.available_mib == 0);
  BOOST_TEST_REQUIRE(r.vms.size() == 3u);
  BOOST_TEST(r.vms[0].name == "borrower");  // sorted by name
  BOOST_TEST(r.vms[1].name == "plain");
  BOOST_TEST(r.vms[2].name == "stopped");

  const VmReading& b = r.vms[0];
  BOOST_TEST(b.running);
  BOOST_TEST(b.vcpus == 4);
  BOOST_TEST(b.memory_mib == 2048);  // <memory> 6 GiB less the device's 4 GiB
  BOOST_TEST(b.pluggable_mib == 4096);
  BOOST_TEST(b.plugged_mib == 0);  // the test driver's <current> is always 0
  BOOST_TEST(b.balloon_mib.value_or(-1) == 2048);
  BOOST_TEST(b.guest_available_mib.value_or(-1) == 1024);

  const VmReading& plain = r.vms[1];
  BOOST_TEST(plain.running);
  BOOST_TEST(plain.memory_mib == 1024);
  BOOST_TEST(plain.pluggable_mib == 0);
  BOOST_TEST(!plain.balloon_mib.has_value());  // no <memballoon>: no balloon, no guest statistics
  BOOST_TEST(!plain.guest_available_mib.has_value());
  BOOST_TEST(!plain.rss_mib.has_value());

  const VmReading& stopped = r.vms[2];
  BOOST_TEST(!stopped.running);
  BOOST_TEST(stopped.vcpus == 2);
  BOOST_TEST(stopped.memory_mib == 512);
  BOOST_TEST(!stopped.cpu_s.has_value());
  BOOST_TEST(!stopped.guest_available_mib.has_value());
}

// libvirt 9.0's test driver has no virDomainUpdateDeviceFlags: attach and
// detach get as far as libvirt and come back refused, with its reason.
BOOST_AUTO_TEST_CASE(attach_and_detach_are_refused_cleanly_where_the_driver_cannot_update_a_device) {
  auto p = open(node_file_uri);
  std::string before = summary(vm(reading(*p), "borrower"));
  require_refused(p->attach("borrower", lent(512)), "virDomainUpdateDeviceFlags");
  require_refused(p->detach("borrower", lent(512)), "virDomainUpdateDeviceFlags");
  BOOST_TEST(summary(vm(reading(*p), "borrower")) == before);
}

BOOST_AUTO_TEST_CASE(attach_and_detach_check_the_device_before_asking_libvirt) {
  auto p = open(node_file_uri);
  std::string before = summary(vm(reading(*p), "borrower"));
  require_refused(p->attach("plain", lent(512)), "no virtio-mem device");
  require_refused(p->attach("borrower", lent(3584 + 2)), "no virtio-mem device has that much room");
  require_refused(p->detach("borrower", lent(512 + 2)), "no virtio-mem device has that much requested");
  require_refused(p->attach("nobody", lent(512)), "nobody");

  auto odd = p->attach("borrower", lent(3));  // the device's block is 2 MiB
  BOOST_TEST_REQUIRE(!odd);
  BOOST_TEST(to_string(odd.error().code) == to_string(ErrorCode::invalid_input));
  BOOST_TEST(odd.error().message.find("block") != std::string::npos, odd.error().message);
  auto none = p->attach("borrower", lent(0));
  BOOST_TEST_REQUIRE(!none);
  BOOST_TEST(to_string(none.error().code) == to_string(ErrorCode::invalid_input));
  BOOST_TEST(summary(vm(reading(*p), "borrower")) == before);
}

BOOST_AUTO_TEST_CASE(migration_is_refused_cleanly_and_the_vm_stays) {
  auto p = open(node_file_uri);
  require_refused(p->migrate("borrower", MigrationTarget{"node-b", "qemu+ssh://node-b/system"}),
                  "migration is not supported");
  BOOST_TEST(vm(reading(*p), "borrower").running);
  auto no_address = p->migrate("borrower", MigrationTarget{"node-b", ""});
  BOOST_TEST_REQUIRE(!no_address);
  BOOST_TEST(to_string(no_address.error().code) == to_string(ErrorCode::invalid_input));
}

BOOST_AUTO_TEST_CASE(set_balloon_changes_the_target_where_there_is_a_balloon) {
  auto p = open(node_file_uri);
  BOOST_TEST_REQUIRE(bool(p->set_balloon("borrower", 1024)));
  BOOST_TEST(vm(reading(*p), "borrower").balloon_mib.value_or(-1) == 1024);
  require_refused(p->set_balloon("plain", 512), "no balloon");
  require_refused(p->set_balloon("nobody", 512), "nobody");
  auto zero = p->set_balloon("borrower", 0);
  BOOST_TEST_REQUIRE(!zero);
  BOOST_TEST(to_string(zero.error().code) == to_string(ErrorCode::invalid_input));
}

// libvirt's message, one line, and nothing printed: stderr is a file here.
BOOST_AUTO_TEST_CASE(an_unreachable_daemon_is_unavailable_and_silent) {
  std::FILE* captured = std::tmpfile();
  BOOST_TEST_REQUIRE(captured != nullptr);
  std::fflush(stderr);
  int saved = ::dup(2);
  BOOST_TEST_REQUIRE(::dup2(::fileno(captured), 2) == 2);
  LibvirtOptions o;
  o.uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
  auto p = make_libvirt(o);
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  long printed = ::lseek(::fileno(captured), 0, SEEK_END);
  std::fclose(captured);
  BOOST_TEST_REQUIRE(!p);
  BOOST_TEST(to_string(p.error().code) == to_string(ErrorCode::unavailable));
  BOOST_TEST(is_one_line(p.error().message));
  BOOST_TEST(p.error().message.find("/nonexistent/libvirt-sock") != std::string::npos, p.error().message);
  BOOST_TEST(printed == 0);
}

BOOST_AUTO_TEST_CASE(bad_options_are_invalid_input) {
  LibvirtOptions o;
  o.uri = "";
  auto p = make_libvirt(o);
  BOOST_TEST_REQUIRE(!p);
  BOOST_TEST(to_string(p.error().code) == to_string(ErrorCode::invalid_input));
}

// ---- the domain XML, as libvirt writes it and as it must not be ----

namespace {

std::string domain_with(const std::string& devices) {
  return "<domain type='kvm'><name>vm</name><devices>" + devices + "</devices></domain>";
}

const std::string virtio_mem_device =
    "<memory model='virtio-mem'><source><pagesize unit='KiB'>4</pagesize></source>"
    "<target><size unit='GiB'>4</size><node>0</node><block unit='KiB'>2048</block>"
    "<requested unit='MiB'>512</requested><current unit='b'>268435456</current></target>"
    "<alias name='virtiomem0'/><address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></memory>";

void require_invalid(const std::string& xml, const std::string& why) {
  auto d = parse_domain_xml(xml);
  BOOST_TEST_REQUIRE(!d, xml);
  BOOST_TEST(to_string(d.error().code) == to_string(ErrorCode::invalid_input));
  BOOST_TEST(d.error().message.find(why) != std::string::npos, d.error().message);
  BOOST_TEST(is_one_line(d.error().message));
}

}  // namespace

BOOST_AUTO_TEST_CASE(parses_virtio_mem_sizes_in_libvirts_units) {
  auto d = parse_domain_xml(domain_with(virtio_mem_device + "<memballoon model='virtio'/>"));
  BOOST_TEST_REQUIRE(bool(d), (d ? "" : d.error().message));
  BOOST_TEST_REQUIRE(d->virtio_mem.size() == 1u);
  BOOST_TEST(d->virtio_mem[0].size == 4ull << 30);
  BOOST_TEST(d->virtio_mem[0].block == 2ull << 20);
  BOOST_TEST(d->virtio_mem[0].requested == 512ull << 20);
  BOOST_TEST(d->virtio_mem[0].current == 256ull << 20);
  BOOST_TEST(d->balloon);

  auto si = parse_domain_xml(domain_with(
      "<memory model='virtio-mem'><target><size>1024</size><requested unit='KB'>3</requested></target></memory>"
      "<memory model='dimm'><target><size>1</size></target></memory><memballoon model='none'/>"));
  BOOST_TEST_REQUIRE(bool(si));
  BOOST_TEST_REQUIRE(si->virtio_mem.size() == 1u);  // a DIMM is not virtio-mem
  BOOST_TEST(si->virtio_mem[0].size == 1024ull * 1024);  // no unit: KiB
  BOOST_TEST(si->virtio_mem[0].requested == 3000u);
  BOOST_TEST(!si->balloon);
}

BOOST_AUTO_TEST_CASE(refuses_xml_that_is_not_a_domain_with_sizes) {
  require_invalid("<domain><devices>", "not well-formed");
  require_invalid("<node/>", "not <domain>");
  require_invalid(domain_with("<memory model='virtio-mem'><target><size>12x</size></target></memory>"), "not a size");
  require_invalid(domain_with("<memory model='virtio-mem'><target><size>-1</size></target></memory>"), "not a size");
  require_invalid(domain_with("<memory model='virtio-mem'><target><size unit='parsec'>1</size></target></memory>"),
                  "unknown unit");
  require_invalid(
      domain_with("<memory model='virtio-mem'><target><size unit='EiB'>100</size></target></memory>"), "overflows");
  require_invalid(domain_with("<memory model='virtio-mem'><target><node>0</node></target></memory>"), "without <size>");
  require_invalid(domain_with("<memory model='virtio-mem'/>"), "without <target>");
  require_invalid("<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
                  "<domain><name>&b;</name></domain>",
                  "DOCTYPE");
  auto big = parse_domain_xml(domain_with(virtio_mem_device), 64);
  BOOST_TEST_REQUIRE(!big);
  BOOST_TEST(big.error().message.find("over the limit") != std::string::npos);
}

// The update keeps the device as libvirt wrote it (alias, address, sizes),
// so that libvirt finds it, and changes only <requested>.
BOOST_AUTO_TEST_CASE(the_update_xml_changes_only_requested) {
  std::string xml = domain_with("<disk type='file'/>" + virtio_mem_device);
  auto update = virtio_mem_update_xml(xml, 0, 1536ull << 20);
  BOOST_TEST_REQUIRE(bool(update), (update ? "" : update.error().message));
  BOOST_TEST(update->rfind("<memory model=\"virtio-mem\">", 0) == 0u, *update);
  BOOST_TEST(update->find("<requested unit=\"KiB\">1572864</requested>") != std::string::npos, *update);
  BOOST_TEST(update->find("<alias name=\"virtiomem0\"/>") != std::string::npos, *update);
  BOOST_TEST(update->find("slot=\"0x05\"") != std::string::npos, *update);
  auto back = parse_domain_xml(domain_with(*update));
  BOOST_TEST_REQUIRE(bool(back));
  BOOST_TEST_REQUIRE(back->virtio_mem.size() == 1u);
  BOOST_TEST(back->virtio_mem[0].requested == 1536ull << 20);
  BOOST_TEST(back->virtio_mem[0].size == 4ull << 30);
  BOOST_TEST(back->virtio_mem[0].current == 256ull << 20);

  // A device libvirt wrote without <requested> gets one.
  auto added = virtio_mem_update_xml(
      domain_with("<memory model='virtio-mem'><target><size unit='KiB'>1048576</size></target></memory>"), 0, 2 << 20);
  BOOST_TEST_REQUIRE(bool(added));
  BOOST_TEST(added->find("<requested unit=\"KiB\">2048</requested>") != std::string::npos, *added);

  BOOST_TEST(!virtio_mem_update_xml(xml, 1, 1 << 20));  // no second device
  BOOST_TEST(!virtio_mem_update_xml(xml, 0, 1000));     // not whole KiB
}
