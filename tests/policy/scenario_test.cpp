// The scenario file is a product interface: every way of getting it wrong
// gets one line naming the file, the key and what is wrong, and nothing is
// half-loaded.
#define BOOST_TEST_MODULE scenario
#include <boost/test/unit_test.hpp>

#include "policy/operator_input.hpp"
#include "scenario/scenario.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

using namespace memlend;
using namespace memlend::policy;
using platform::parse_scenario;

namespace {

const std::string origin = "cluster.json";

// A valid scenario with `patch` spliced in where the marker stands.
std::string with(const std::string& hosts, const std::string& vms = "[]", const std::string& rest = "") {
  return R"({ "hosts": )" + hosts + R"(, "vms": )" + vms + rest + " }";
}
const std::string two_hosts =
    R"([ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000 }, { "name": "B", "memory_mib": 65536, "cpu_mhz": 8000 } ])";

std::string vm(const std::string& fields) {
  return R"([ { "name": "V", "host": "A", "memory_mib": 32768, "cpu_mhz": 4000)" + fields + " } ]";
}

// The error names the file, then the key, then what is wrong, on one line.
void expect_error(const std::string& text, const std::string& key, const std::string& what) {
  auto r = parse_scenario(text, origin);
  BOOST_TEST_REQUIRE(!r, "accepted: " << text);
  const std::string& m = r.error().message;
  std::string head = origin + ": " + key + ": ";
  BOOST_TEST(m.rfind(head, 0) == 0u, "\"" << m << "\" starts with \"" << head << "\"");
  BOOST_TEST(m.find(what) != std::string::npos, "\"" << m << "\" says \"" << what << "\"");
  BOOST_TEST(m.find('\n') == std::string::npos, m);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_minimal_scenario_gets_the_documented_defaults) {
  auto r = parse_scenario(with(two_hosts, vm("")), origin);
  BOOST_TEST_REQUIRE(bool(r), (r ? "" : r.error().message));
  const Settings& s = r->settings;
  BOOST_TEST(s.page_size_kib == 4);
  BOOST_TEST(s.rdma_block_kib == 1024);
  BOOST_TEST(s.buffer_blocks == 1);
  BOOST_TEST((s.placement == Heuristic::best_fit));
  BOOST_TEST((s.order == Order::listed));
  BOOST_TEST((s.donors == DonorMode::fewest));
  BOOST_TEST(s.migrate_after_s == 600);
  BOOST_TEST(s.detect_samples == 3);
  const Host& a = r->hosts[0];
  BOOST_TEST(a.rdma);
  BOOST_TEST(a.data_path);
  BOOST_TEST(a.up);
  BOOST_TEST(a.reserved_mib == 0);
  BOOST_TEST(a.fabric == "");
  BOOST_TEST(r->vms[0].host == 0u);
  BOOST_TEST(r->vms[0].remote.empty());
  BOOST_TEST(r->vms[0].remote_for_s == 0);
  BOOST_TEST(!r->vms[0].donors.has_value());
}

BOOST_AUTO_TEST_CASE(every_setting_and_field_is_read) {
  std::string text = R"({
    "settings": { "page_size_kib": 512, "rdma_block_kib": 2048, "buffer_blocks": 2, "placement": "l2_ratio",
                  "order": "ffd_prod", "donors": "spread", "migrate_after_s": 60, "detect_samples": 5,
                  "sample_period_s": 7 },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000, "rdma": false, "data_path": false,
                 "up": false, "reserved_mib": 1024, "fabric": "r1" },
               { "name": "B", "memory_mib": 65536, "cpu_mhz": 8000, "fabric": "r1" } ],
    "vms": [ { "name": "V", "host": "A", "memory_mib": 32768, "cpu_mhz": 0,
               "remote": [ { "donor": "B", "mib": 4096 } ], "remote_for_s": 30, "donors": "fewest" } ],
    "events": [ { "at_s": 90, "host": "B", "up": false }, { "at_s": 30.5, "vm": "V", "memory_mib": 40000 } ]
  })";
  auto r = parse_scenario(text, origin);
  BOOST_TEST_REQUIRE(bool(r), (r ? "" : r.error().message));
  BOOST_TEST(r->settings.page_size_kib == 512);
  BOOST_TEST(r->settings.rdma_block_kib == 2048);
  BOOST_TEST(r->settings.buffer_blocks == 2);
  BOOST_TEST((r->settings.placement == Heuristic::l2_ratio));
  BOOST_TEST((r->settings.order == Order::ffd_prod));
  BOOST_TEST((r->settings.donors == DonorMode::spread));
  BOOST_TEST(r->settings.migrate_after_s == 60);
  BOOST_TEST(r->settings.detect_samples == 5);
  BOOST_TEST(r->settings.sample_period_s == 7);
  const Host& a = r->hosts[0];
  BOOST_TEST((!a.rdma && !a.data_path && !a.up));
  BOOST_TEST(a.reserved_mib == 1024);
  BOOST_TEST(a.fabric == "r1");
  const Vm& v = r->vms[0];
  BOOST_TEST_REQUIRE(v.remote.size() == 1u);
  BOOST_TEST(v.remote[0].donor == 1u);
  BOOST_TEST(v.remote[0].mib == 4096);
  BOOST_TEST(v.remote_for_s == 30);
  BOOST_TEST((v.donors == DonorMode::fewest));
  // Events come sorted by time.
  BOOST_TEST_REQUIRE(r->events.size() == 2u);
  BOOST_TEST(r->events[0].at_s == 30.5);
  BOOST_TEST(r->events[0].vm == 0u);
  BOOST_TEST(*r->events[0].memory_mib == 40000);
  BOOST_TEST(r->events[1].host == 1u);
  BOOST_TEST(*r->events[1].up == false);
}

// nlohmann's lexer ends the input at a NUL, so what followed one was never
// read; and a number past 2^64 became a double, reported as "a fraction".
BOOST_AUTO_TEST_CASE(a_nul_and_what_follows_it_or_an_integer_beyond_64_bits_is_refused) {
  std::string valid = with(two_hosts, vm(""));
  for (const std::string& text : {valid + std::string(1, '\0'), valid + std::string("\0junk", 5),
                                  std::string("{\0} junk", 8)}) {
    auto r = parse_scenario(text, origin);
    BOOST_TEST_REQUIRE(!r, "accepted a NUL: " << text);
    BOOST_TEST(r.error().message.rfind(origin + ": not valid JSON: a NUL byte at offset ", 0) == 0u,
               r.error().message);
  }
  BOOST_TEST(!parse_scenario(valid + " junk", origin));
  expect_error(with(R"([ { "name": "A", "memory_mib": 18446744073709551616, "cpu_mhz": 1 } ])"),
               "hosts[0].memory_mib", "18446744073709551616 is an integer beyond 64 bits");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "vm": "V", "memory_mib": -9223372036854775809 } ])"),
               "events[0].memory_mib", "-9223372036854775809 is an integer beyond 64 bits");
  expect_error(R"({ "settings": { "migrate_after_s": 99999999999999999999999999 }, "hosts": )" + two_hosts + " }",
               "settings.migrate_after_s", "is an integer beyond 64 bits");
  // What still fits reads as before.
  expect_error(with(R"([ { "name": "A", "memory_mib": 18446744073709551615, "cpu_mhz": 1 } ])"),
               "hosts[0].memory_mib", "must be at most");
}

BOOST_AUTO_TEST_CASE(not_json) {
  // 9e308 is valid JSON syntax but no double holds it: the fuzzer found it crashing `plan`.
  for (const char* text : {"", "{", "hosts: []", "{ \"hosts\": [ ] } trailing", "{ \"hosts\": [ 1, ] }",
                           "{ \"hosts\": 9e308 }"}) {
    auto r = parse_scenario(text, origin);
    BOOST_TEST_REQUIRE(!r, text);
    BOOST_TEST(r.error().message.rfind(origin + ": not valid JSON: ", 0) == 0u, r.error().message);
    BOOST_TEST(r.error().message.find('\n') == std::string::npos);
  }
}

// The fuzzer's find: a key with a newline in it, echoed in the message, made
// it two lines (and an escape sequence could have coloured the terminal).
BOOST_AUTO_TEST_CASE(names_from_the_file_are_echoed_on_one_line) {
  auto r = parse_scenario("{ \"set\\ntings\": {}, \"hosts\": [], \"vms\": [] }", origin);
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST(r.error().message == origin + ": set\\ntings: unknown key");
  r = parse_scenario("{ \"hosts\": [ { \"name\": \"A\", \"memory_mib\": 1024, \"cpu_mhz\": 1000, "
                     "\"x\\u001b[31m\\r\": 1 } ], \"vms\": [] }",
                     origin);
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST(r.error().message == origin + ": hosts[0].x\\x1b[31m\\r: unknown key");
}

BOOST_AUTO_TEST_CASE(not_an_object_at_the_top) {
  expect_error("[]", "top level", "must be an object, got an array");
  expect_error("42", "top level", "must be an object");
}

// Nesting deep enough to overflow a recursive parser's stack is refused,
// not a crash.
BOOST_AUTO_TEST_CASE(deep_nesting_is_an_error_not_a_crash) {
  std::string deep = R"({ "hosts": )" + std::string(100000, '[') + std::string(100000, ']') + " }";
  auto r = parse_scenario(deep, origin);
  BOOST_TEST(!r);
}

// An open cluster's scenario: its settings, and the hosts are whoever joins.
BOOST_AUTO_TEST_CASE(a_scenario_of_no_hosts_is_settings_only) {
  auto r = parse_scenario(R"({ "settings": { "sample_period_s": 2 }, "hosts": [] })", origin);
  BOOST_TEST_REQUIRE(static_cast<bool>(r));
  BOOST_TEST(r->hosts.empty());
  BOOST_TEST(r->settings.sample_period_s == 2);
  expect_error(R"({ "hosts": [], "vms": [ { "name": "V", "host": "A", "memory_mib": 1, "cpu_mhz": 1 } ] })",
               "vms[0].host", "");
}

BOOST_AUTO_TEST_CASE(missing_required_keys) {
  expect_error(R"({ "vms": [] })", "hosts", "missing (required)");
  expect_error(with(R"([ { "memory_mib": 1, "cpu_mhz": 1 } ])"), "hosts[0].name", "missing (required)");
  expect_error(with(R"([ { "name": "A", "cpu_mhz": 1 } ])"), "hosts[0].memory_mib", "missing (required)");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1 } ])"), "hosts[0].cpu_mhz", "missing (required)");
  expect_error(with(two_hosts, R"([ { "name": "V", "memory_mib": 1, "cpu_mhz": 1 } ])"), "vms[0].host",
               "missing (required)");
  expect_error(with(two_hosts, R"([ { "name": "V", "host": "A", "cpu_mhz": 1 } ])"), "vms[0].memory_mib",
               "missing (required)");
  expect_error(with(two_hosts, R"([ { "name": "V", "host": "A", "memory_mib": 1 } ])"), "vms[0].cpu_mhz",
               "missing (required)");
  expect_error(with(two_hosts, R"([ { "host": "A", "memory_mib": 1, "cpu_mhz": 1 } ])"), "vms[0].name",
               "missing (required)");
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "B" } ])")), "vms[0].remote[0].mib",
               "missing (required)");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "vm": "V", "memory_mib": 1 } ])"), "events[0].at_s",
               "missing (required)");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "host": "A" } ])"), "events[0].up",
               "missing");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "vm": "V" } ])"), "events[0]",
               "must give memory_mib or cpu_mhz");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1 } ])"), "events[0]",
               "either a \"vm\" or a \"host\"");
}

BOOST_AUTO_TEST_CASE(unknown_hosts_and_vms) {
  expect_error(with(two_hosts, R"([ { "name": "V", "host": "Z", "memory_mib": 1, "cpu_mhz": 1 } ])"),
               "vms[0].host", "unknown host \"Z\"");
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "Z", "mib": 1 } ])")), "vms[0].remote[0].donor",
               "unknown host \"Z\"");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "host": "Z", "up": false } ])"),
               "events[0].host", "unknown host \"Z\"");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "vm": "W", "memory_mib": 1 } ])"),
               "events[0].vm", "unknown VM \"W\"");
}

BOOST_AUTO_TEST_CASE(negative_and_absurd_sizes) {
  expect_error(with(R"([ { "name": "A", "memory_mib": -1, "cpu_mhz": 1 } ])"), "hosts[0].memory_mib",
               "must be between 1 and");
  expect_error(with(R"([ { "name": "A", "memory_mib": 0, "cpu_mhz": 1 } ])"), "hosts[0].memory_mib", "got 0");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1099511627776, "cpu_mhz": 1 } ])"), "hosts[0].memory_mib",
               "got 1099511627776");
  expect_error(with(R"([ { "name": "A", "memory_mib": 18446744073709551615, "cpu_mhz": 1 } ])"),
               "hosts[0].memory_mib", "must be at most");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1, "cpu_mhz": -8000 } ])"), "hosts[0].cpu_mhz", "got -8000");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1, "cpu_mhz": 1000000000000 } ])"), "hosts[0].cpu_mhz",
               "must be at most 100000000, got 1000000000000");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1024, "cpu_mhz": 1, "reserved_mib": -1 } ])"),
               "hosts[0].reserved_mib", "got -1");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1024, "cpu_mhz": 1, "reserved_mib": 2048 } ])"),
               "hosts[0].reserved_mib", "more than the host's memory_mib");
  expect_error(with(two_hosts, R"([ { "name": "V", "host": "A", "memory_mib": -5, "cpu_mhz": 1 } ])"),
               "vms[0].memory_mib", "got -5");
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "B", "mib": 0 } ])")), "vms[0].remote[0].mib",
               "got 0");
  expect_error(with(two_hosts, vm(R"(, "remote_for_s": -1)")), "vms[0].remote_for_s", "got -1");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": -1, "vm": "V", "memory_mib": 1 } ])"),
               "events[0].at_s", "must be between 0 and");
  expect_error(R"({ "settings": { "page_size_kib": 3 }, "hosts": )" + two_hosts + " }", "settings.page_size_kib",
               "power of two");
  expect_error(R"({ "settings": { "rdma_block_kib": 0 }, "hosts": )" + two_hosts + " }",
               "settings.rdma_block_kib", "got 0");
  expect_error(R"({ "settings": { "buffer_blocks": 4096, "rdma_block_kib": 1048576 }, "hosts": )" + two_hosts + " }",
               "settings.buffer_blocks", "more than 1 GiB");
  expect_error(R"({ "settings": { "detect_samples": 0 }, "hosts": )" + two_hosts + " }", "settings.detect_samples",
               "got 0");
}

BOOST_AUTO_TEST_CASE(loans_that_cannot_be) {
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "A", "mib": 1 } ])")), "vms[0].remote[0].donor",
               "the VM's own host");
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "B", "mib": 1 }, { "donor": "B", "mib": 1 } ])")),
               "vms[0].remote[1].donor", "lends to this VM twice");
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "B", "mib": 40000 } ])")), "vms[0].remote",
               "borrows more than the VM's memory_mib");
  std::string racks = R"([ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000, "fabric": "r1" },
                          { "name": "B", "memory_mib": 65536, "cpu_mhz": 8000, "fabric": "r2" } ])";
  expect_error(with(racks, vm(R"(, "remote": [ { "donor": "B", "mib": 1 } ])")), "vms[0].remote[0].donor",
               "B is in fabric \"r2\", A in \"r1\"");
  std::string greedy = R"([ { "name": "V", "host": "A", "memory_mib": 65536, "cpu_mhz": 1,
                             "remote": [ { "donor": "B", "mib": 40000 } ] },
                           { "name": "W", "host": "A", "memory_mib": 65536, "cpu_mhz": 1,
                             "remote": [ { "donor": "B", "mib": 40000 } ] } ])";
  expect_error(with(two_hosts, greedy), "vms[1].remote[0].mib", "more than its memory_mib");
}

BOOST_AUTO_TEST_CASE(unknown_heuristic_order_or_donor_mode) {
  expect_error(R"({ "settings": { "placement": "random_fit" }, "hosts": )" + two_hosts + " }",
               "settings.placement", "unknown value \"random_fit\"");
  expect_error(R"({ "settings": { "placement": "BEST_FIT" }, "hosts": )" + two_hosts + " }", "settings.placement",
               "one of first_fit, best_fit, worst_fit, cosine, l2_diff, l2_ratio");
  expect_error(R"({ "settings": { "order": "biggest" }, "hosts": )" + two_hosts + " }", "settings.order",
               "unknown value \"biggest\"");
  expect_error(R"({ "settings": { "donors": "all" }, "hosts": )" + two_hosts + " }", "settings.donors",
               "unknown value \"all\"");
  expect_error(with(two_hosts, vm(R"(, "donors": "many")")), "vms[0].donors", "unknown value \"many\"");
}

BOOST_AUTO_TEST_CASE(one_name_for_two_hosts_or_two_vms) {
  expect_error(with(R"([ { "name": "A", "memory_mib": 1, "cpu_mhz": 1 }, { "name": "A", "memory_mib": 2, "cpu_mhz": 2 } ])"),
               "hosts[1].name", "\"A\" names two hosts");
  expect_error(with(two_hosts, R"([ { "name": "V", "host": "A", "memory_mib": 1, "cpu_mhz": 1 },
                                    { "name": "V", "host": "B", "memory_mib": 1, "cpu_mhz": 1 } ])"),
               "vms[1].name", "\"V\" names two VMs");
}

BOOST_AUTO_TEST_CASE(names_that_cannot_be) {
  expect_error(with(R"([ { "name": "", "memory_mib": 1, "cpu_mhz": 1 } ])"), "hosts[0].name", "must not be empty");
  expect_error(with(R"([ { "name": "a/b", "memory_mib": 1, "cpu_mhz": 1 } ])"), "hosts[0].name", "'/'");
  expect_error(with(R"([ { "name": "a\nb", "memory_mib": 1, "cpu_mhz": 1 } ])"), "hosts[0].name",
               "control characters");
  expect_error(with(R"([ { "name": ")" + std::string(129, 'x') + R"(", "memory_mib": 1, "cpu_mhz": 1 } ])"),
               "hosts[0].name", "longer than 128");
  // Bidirectional overrides make a name read as another in a log or a plan;
  // each of U+202A..U+202E and U+2066..U+2069, in a host, a VM or a fabric.
  for (const char* bidi : {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                           "\u2069"}) {
    std::string name = std::string("A") + bidi + "B";
    expect_error(with(R"([ { "name": ")" + name + R"(", "memory_mib": 1, "cpu_mhz": 1 } ])"), "hosts[0].name",
                 "bidirectional override");
    expect_error(with(two_hosts, R"([ { "name": ")" + name + R"(", "host": "A", "memory_mib": 1, "cpu_mhz": 1 } ])"),
                 "vms[0].name", "bidirectional override");
    expect_error(with(R"([ { "name": "A", "memory_mib": 1, "cpu_mhz": 1, "fabric": ")" + name + R"(" } ])"),
                 "hosts[0].fabric", "bidirectional override");
  }
  // Their neighbours and other non-ASCII letters are names like any other.
  for (const char* fine : {"\u2029x", "\u206ax", "\u2065x", "\u2029", "h\u00f4te", "\u8282\u70b9"}) {
    auto r = parse_scenario(with(R"([ { "name": ")" + std::string(fine) + R"(", "memory_mib": 1, "cpu_mhz": 1 } ])"),
                            origin);
    BOOST_TEST(bool(r), fine << ": " << (r ? "" : r.error().message));
  }
}

// A key, a name or a value from the file is echoed as a short prefix: a
// 1 MB string in a scenario does not make a 1 MB error line.
BOOST_AUTO_TEST_CASE(long_values_are_echoed_as_a_prefix) {
  const std::string huge(1 << 20, 'x');
  auto short_line = [](const std::string& text, const std::string& says) {
    auto r = parse_scenario(text, origin);
    BOOST_TEST_REQUIRE(!r);
    BOOST_TEST(r.error().message.size() < 400u, r.error().message.substr(0, 400));
    BOOST_TEST(r.error().message.find(says) != std::string::npos, r.error().message.substr(0, 400));
    BOOST_TEST(r.error().message.find(" bytes)") != std::string::npos, r.error().message.substr(0, 400));
  };
  short_line(R"({ "settings": { "placement": ")" + huge + R"(" }, "hosts": )" + two_hosts + " }", "unknown value");
  short_line(R"({ ")" + huge + R"(": 1, "hosts": )" + two_hosts + " }", "unknown key");
  short_line(R"({ ")" + huge + R"(": 1, ")" + huge + R"(": 2 })", "appears twice");
  short_line(R"({ "hosts": [ { "name": ")" + huge + R"(, "memory_mib": 1 } ] })", "not valid JSON");
}

// The parser builds the document in one pass; keys are checked for
// duplicates in the object they belong to, however deep and however large
// the document.
BOOST_AUTO_TEST_CASE(duplicate_keys_are_found_at_any_depth_in_a_large_document) {
  const int n = 20000;
  std::string hosts = "[";
  std::string vms = "[";
  for (int i = 0; i < n; ++i) {
    std::string h = "h" + std::to_string(i);
    hosts += (i ? "," : "") + std::string(R"({ "name": ")") + h + R"(", "memory_mib": 65536, "cpu_mhz": 8000 })";
    vms += (i ? "," : "") + std::string(R"({ "name": "v)") + std::to_string(i) + R"(", "host": ")" + h +
           R"(", "memory_mib": 1024, "cpu_mhz": 1, "remote": [ { "donor": "h)" + std::to_string((i + 1) % n) +
           R"(", "mib": 1 } ] })";
  }
  hosts += "]";
  vms += "]";
  auto big = parse_scenario(with(hosts, vms), origin);
  BOOST_TEST_REQUIRE(bool(big), (big ? "" : big.error().message));
  BOOST_TEST(big->hosts.size() == std::size_t(n));
  BOOST_TEST(big->vms.size() == std::size_t(n));
  BOOST_TEST(big->vms.back().remote.at(0).donor == 0u);

  auto dup = [&](std::string text, const std::string& key) {
    auto r = parse_scenario(text, origin);
    BOOST_TEST_REQUIRE(!r, "accepted a second " << key);
    BOOST_TEST(r.error().message == origin + ": key \"" + key + "\" appears twice in one object");
  };
  auto last = [&](const std::string& all, const std::string& from, const std::string& to) {
    std::string text = all;
    auto at = text.rfind(from);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
  };
  // In the last host (depth 3), the last loan of the last VM (depth 5), and the top.
  dup(with(last(hosts, R"("cpu_mhz": 8000 })", R"("cpu_mhz": 8000, "cpu_mhz": 1 })"), vms), "cpu_mhz");
  dup(with(hosts, last(vms, R"("mib": 1 })", R"("mib": 1, "mib": 2 })")), "mib");
  dup(with(hosts, vms, R"(, "vms": [])"), "vms");
  // An object nested where a value was expected is still checked.
  dup(with(hosts, last(vms, R"("mib": 1 })", R"("mib": { "a": 1, "b": { "c": 1, "c": 2 } } })")), "c");
  // Equal keys in sibling objects are not duplicates.
  BOOST_TEST(bool(parse_scenario(with(hosts, vms), origin)));
}

// Each open level costs memory, and the file may hold 64 MiB of '['.
BOOST_AUTO_TEST_CASE(nesting_deeper_than_a_scenario_goes_is_refused) {
  std::string deep = R"({ "hosts": )" + std::string(1000000, '[') + std::string(1000000, ']') + " }";
  auto zeros = [](int n) {
    std::string path;
    for (int i = 0; i < n; ++i) path += "[0]";
    return path;
  };
  // The object and 15 arrays are open; the 17th level is refused.
  expect_error(deep, "hosts" + zeros(15), "nested deeper than 16 levels");
  expect_error(std::string(20, '[') + std::string(20, ']'), zeros(16), "nested deeper than 16 levels");
  expect_error(std::string(16, '[') + std::string(16, ']'), "top level", "must be an object, got an array");
  expect_error(R"({ "hosts": [ [] ] })", "hosts[0]", "must be an object, got an array");
}

// The patent's buffer rule, lcm(page, block) x blocks, with a block that is
// not a power of two: 768 KiB blocks and 2 MiB pages make 6 MiB per block.
BOOST_AUTO_TEST_CASE(an_rdma_block_of_whole_4_kib_pages_is_accepted) {
  auto r = parse_scenario(R"({ "settings": { "page_size_kib": 2048, "rdma_block_kib": 768, "buffer_blocks": 3 },
                               "hosts": )" + two_hosts + " }",
                          origin);
  BOOST_TEST_REQUIRE(bool(r), (r ? "" : r.error().message));
  BOOST_TEST(r->settings.rdma_block_kib == 768);
  BOOST_TEST(buffer_kib_per_lease(r->settings) == 18432);
  for (int block : {12, 4, 1, 2, 1048572}) {
    auto ok = parse_scenario(R"({ "settings": { "rdma_block_kib": )" + std::to_string(block) + R"( }, "hosts": )" +
                                 two_hosts + " }",
                             origin);
    BOOST_TEST(bool(ok), block << ": " << (ok ? "" : ok.error().message));
  }
  for (int block : {3, 6, 770}) {
    expect_error(R"({ "settings": { "rdma_block_kib": )" + std::to_string(block) + R"( }, "hosts": )" + two_hosts + " }",
                 "settings.rdma_block_kib", "whole number of 4 KiB pages, got " + std::to_string(block));
  }
}

// nlohmann would keep the last of two equal keys; a scenario that says
// something twice is a mistake, wherever it stands.
BOOST_AUTO_TEST_CASE(duplicate_keys) {
  auto dup = [](const std::string& text, const std::string& key) {
    auto r = parse_scenario(text, origin);
    BOOST_TEST_REQUIRE(!r, text);
    BOOST_TEST(r.error().message == origin + ": key \"" + key + "\" appears twice in one object");
  };
  dup(R"({ "hosts": )" + two_hosts + R"(, "hosts": )" + two_hosts + " }", "hosts");
  dup(with(R"([ { "name": "A", "memory_mib": 1, "memory_mib": 2, "cpu_mhz": 1 } ])"), "memory_mib");
  dup(R"({ "settings": { "placement": "cosine", "placement": "best_fit" }, "hosts": )" + two_hosts + " }",
      "placement");
  // The same key in two different objects is fine.
  BOOST_TEST(bool(parse_scenario(with(two_hosts, vm("")), origin)));
}

BOOST_AUTO_TEST_CASE(unknown_keys) {
  expect_error(R"({ "hosts": )" + two_hosts + R"(, "vm": [] })", "vm", "unknown key");
  expect_error(with(R"([ { "name": "A", "memroy_mib": 1, "memory_mib": 1, "cpu_mhz": 1 } ])"),
               "hosts[0].memroy_mib", "unknown key");
  expect_error(R"({ "settings": { "placment": "cosine" }, "hosts": )" + two_hosts + " }", "settings.placment",
               "unknown key");
  expect_error(with(two_hosts, vm(R"(, "remote": [ { "donor": "B", "mib": 1, "for_s": 3 } ])")),
               "vms[0].remote[0].for_s", "unknown key");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "vm": "V", "memory_mib": 1, "up": true } ])"),
               "events[0].up", "applies to a host");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": 1, "host": "A", "up": true, "cpu_mhz": 1 } ])"),
               "events[0]", "gives only \"up\"");
}

BOOST_AUTO_TEST_CASE(wrong_types) {
  expect_error(R"({ "hosts": {} })", "hosts", "must be an array, got an object");
  expect_error(with(R"([ "A" ])"), "hosts[0]", "must be an object, got a string");
  expect_error(with(R"([ { "name": 5, "memory_mib": 1, "cpu_mhz": 1 } ])"), "hosts[0].name",
               "must be a string, got a number");
  expect_error(with(R"([ { "name": "A", "memory_mib": "16384", "cpu_mhz": 1 } ])"), "hosts[0].memory_mib",
               "must be an integer, got a string");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1.5, "cpu_mhz": 1 } ])"), "hosts[0].memory_mib",
               "must be an integer, got a fraction");
  expect_error(with(R"([ { "name": "A", "memory_mib": null, "cpu_mhz": 1 } ])"), "hosts[0].memory_mib",
               "got null");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1, "cpu_mhz": 1, "rdma": "yes" } ])"), "hosts[0].rdma",
               "must be true or false, got a string");
  expect_error(with(R"([ { "name": "A", "memory_mib": 1, "cpu_mhz": 1, "up": 1 } ])"), "hosts[0].up",
               "must be true or false");
  expect_error(R"({ "settings": [], "hosts": )" + two_hosts + " }", "settings", "must be an object, got an array");
  expect_error(R"({ "settings": { "placement": 3 }, "hosts": )" + two_hosts + " }", "settings.placement",
               "got a number");
  expect_error(with(two_hosts, R"({ "V": 1 })"), "vms", "must be an array");
  expect_error(with(two_hosts, vm(R"(, "remote": { "donor": "B", "mib": 1 })")), "vms[0].remote",
               "must be an array");
  expect_error(with(two_hosts, vm(""), R"(, "events": [ { "at_s": "soon", "vm": "V", "memory_mib": 1 } ])"),
               "events[0].at_s", "must be a number of seconds, got a string");
}

BOOST_AUTO_TEST_CASE(files_that_cannot_be_read_name_the_file) {
  auto missing = platform::load_scenario("no-such-dir/memlend.json");
  BOOST_TEST_REQUIRE(!missing);
  BOOST_TEST(missing.error().message ==
             "no-such-dir/memlend.json: cannot open the scenario file (No such file or directory)");
  auto dir = platform::load_scenario(MEMLEND_SOURCE_DIR);
  BOOST_TEST_REQUIRE(!dir);
  BOOST_TEST(dir.error().message.find("is a directory") != std::string::npos);
}

namespace {

struct ScratchDir {
  std::string path = [] {
    char t[] = "/tmp/memlend-scenario-XXXXXX";
    return std::string(::mkdtemp(t));
  }();
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string refusal(const std::string& path) {
  auto r = platform::load_scenario(path);
  BOOST_TEST_REQUIRE(!r, path << " was read as a scenario");
  const std::string& m = r.error().message;
  BOOST_TEST(m.rfind(path + ": ", 0) == 0u, m);
  BOOST_TEST(m.find('\n') == std::string::npos, m);
  return m;
}

}  // namespace

// Files that never end, or never begin: refused at once, before reading a
// byte (/dev/zero used to be read until memory ran out, a FIFO waited for a
// writer forever).
BOOST_AUTO_TEST_CASE(only_a_regular_file_is_read_and_only_so_much, *boost::unit_test::timeout(60)) {
  BOOST_TEST(refusal("/dev/zero") == "/dev/zero: is a character device; the scenario file must be a regular file");
  BOOST_TEST(refusal("/dev/urandom").find("is a character device") != std::string::npos);
  ScratchDir dir;
  std::string fifo = dir.path + "/scenario.fifo";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  BOOST_TEST(refusal(fifo).find("is a FIFO; the scenario file must be a regular file") != std::string::npos);
  // A FIFO with a writer that never stops is refused the same.
  int writer = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  BOOST_TEST_REQUIRE(writer >= 0);
  BOOST_TEST(::write(writer, "{", 1) == 1);
  BOOST_TEST(refusal(fifo).find("is a FIFO") != std::string::npos);
  ::close(writer);

  // Sparse: 64 MiB and one byte, refused by its size without reading it.
  std::string big = dir.path + "/big.json";
  std::ofstream(big) << "{";
  BOOST_TEST_REQUIRE(::truncate(big.c_str(), (64 << 20) + 1) == 0);
  BOOST_TEST(refusal(big).find("is larger than the 64 MiB a scenario file may hold") != std::string::npos);
  // 64 MiB exactly is read (and is not a scenario: zeros after the brace).
  BOOST_TEST_REQUIRE(::truncate(big.c_str(), 64 << 20) == 0);
  BOOST_TEST(refusal(big).find("not valid JSON") != std::string::npos);

  // A link to a regular file is a regular file.
  std::string link = dir.path + "/link.json";
  std::filesystem::create_symlink(std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json", link);
  BOOST_TEST(bool(platform::load_scenario(link)));
}

// The bound is on the bytes that arrive, not on the size fstat gives: a file
// of /proc says 0 and then holds more.
BOOST_AUTO_TEST_CASE(the_bound_is_on_what_is_read_not_on_what_fstat_said) {
  ScratchDir dir;
  std::string file = dir.path + "/hundred";
  std::ofstream(file) << std::string(100, 'x');
  BOOST_TEST(read_input_file(file, "test file", 100).operator bool());
  auto r = read_input_file(file, "test file", 99);
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST(r.error().message == file + ": is larger than the 99 bytes a test file may hold");
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat("/proc/self/maps", &st) == 0);
  BOOST_TEST_REQUIRE(st.st_size == 0);
  auto maps = read_input_file("/proc/self/maps", "test file", 100);
  BOOST_TEST_REQUIRE(!maps);
  BOOST_TEST(maps.error().message.find("is larger than the 100 bytes") != std::string::npos, maps.error().message);
  BOOST_TEST(read_input_file("/proc/self/maps", "test file", 1 << 20).operator bool());
}
