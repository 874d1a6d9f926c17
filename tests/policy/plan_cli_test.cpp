// `memlend plan` as operators run it: the real binary, on the example files
// and on bad ones. The JSON keys are DESIGN.md's "Plan output".
#define BOOST_TEST_MODULE plan_cli
#include <boost/test/unit_test.hpp>

#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using memlend::test::make_temp_dir;
using memlend::test::run_process;
// Ordered, so that the key order of the output can be checked.
using json = nlohmann::ordered_json;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string examples = std::string(MEMLEND_SOURCE_DIR) + "/examples/";

struct TempDir {
  std::string path = make_temp_dir("plan");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string file = path + "/" + name;
    std::ofstream(file) << text;
    return file;
  }
};

json plan_json(const std::string& file) {
  auto r = run_process({bin, "plan", "--scenario", file, "--json"}, 30);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(r.err.empty());
  return json::parse(r.out);
}

// Every decision has exactly DESIGN.md's keys (and local_mib), in its order.
void check_keys(const json& d) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : d.items()) keys.push_back(k);
  std::vector<std::string> want{"vm",       "host",      "kind",       "extra_memory_mib", "extra_cpu_mhz", "leases",
                                "local_mib", "buffer_kib", "mirror", "target",           "reason"};
  BOOST_TEST(keys == want, d.dump());
  BOOST_TEST(d.at("reason").is_string());
  BOOST_TEST(!d.at("reason").get<std::string>().empty());
  for (const auto& l : d.at("leases")) {
    BOOST_TEST(l.at("donor").is_string());
    BOOST_TEST(l.at("mib").is_number_integer());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(fig2_as_design_md_shows_it) {
  json out = plan_json(examples + "fig2.json");
  BOOST_TEST_REQUIRE(out.size() == 1u);
  BOOST_TEST_REQUIRE(out.at("decisions").size() == 1u);
  const json& d = out["decisions"][0];
  check_keys(d);
  BOOST_TEST(d["vm"] == "VM2");
  BOOST_TEST(d["host"] == "A");
  BOOST_TEST(d["kind"] == "remote_memory");
  BOOST_TEST(d["extra_memory_mib"] == 49152);
  BOOST_TEST(d["extra_cpu_mhz"] == 0);
  BOOST_TEST(d["leases"].size() == 1u);
  BOOST_TEST(d["leases"][0]["donor"] == "B");
  BOOST_TEST(d["leases"][0]["mib"] == 49152);
  BOOST_TEST(d["leases"][0]["transport"] == "rdma");
  BOOST_TEST(d["buffer_kib"] == 1024);
  BOOST_TEST((d["mirror"] == json{{"mib", 49152}}));
  BOOST_TEST(d["target"].is_null());
}

BOOST_AUTO_TEST_CASE(fig3_spreads_over_a_and_n) {
  const json out = plan_json(examples + "fig3.json");
  const json& d = out["decisions"][0];
  check_keys(d);
  BOOST_TEST(d["vm"] == "VM4");
  BOOST_TEST(d["kind"] == "remote_memory");
  BOOST_TEST(d["extra_memory_mib"] == 16384);
  BOOST_TEST((d["leases"] == json::parse(R"([ { "donor": "A", "mib": 8192, "transport": "rdma" },
                                              { "donor": "N", "mib": 8192, "transport": "rdma" } ])")));
  BOOST_TEST(d["buffer_kib"] == 2048);
  BOOST_TEST((d["mirror"] == json{{"mib", 16384}}));
}

BOOST_AUTO_TEST_CASE(cpu_case_names_its_target) {
  const json ds = plan_json(examples + "cpu.json")["decisions"];
  BOOST_TEST_REQUIRE(ds.size() == 2u);
  check_keys(ds[0]);
  check_keys(ds[1]);
  BOOST_TEST(ds[0]["kind"] == "none");
  BOOST_TEST(ds[0]["leases"].empty());
  BOOST_TEST(ds[0]["mirror"].is_null());
  BOOST_TEST(ds[0]["target"].is_null());
  BOOST_TEST(ds[1]["kind"] == "migrate");
  BOOST_TEST(ds[1]["target"] == "C");
  BOOST_TEST(ds[1]["local_mib"] == 8192);
  BOOST_TEST(ds[1]["leases"][0]["donor"] == "A");
  BOOST_TEST(ds[1]["leases"][0]["mib"] == 16384);
}

BOOST_AUTO_TEST_CASE(plain_output_is_one_line_per_vm) {
  auto r = run_process({bin, "plan", "--scenario", examples + "cpu.json"}, 30);
  BOOST_TEST(r.status == 0);
  BOOST_TEST(std::count(r.out.begin(), r.out.end(), '\n') == 2);
  BOOST_TEST(r.out.rfind("VM1 on B: none: ", 0) == 0u, r.out);
  BOOST_TEST(r.out.find("\nVM4 on B: migrate: ") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(an_unsatisfied_need_is_a_decision_not_an_error) {
  TempDir dir;
  std::string file = dir.write("short.json", R"({
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "B", "memory_mib": 4096, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "V", "host": "A", "memory_mib": 32768, "cpu_mhz": 1000 } ] })");
  const json out = plan_json(file);
  const json& d = out["decisions"][0];
  check_keys(d);
  BOOST_TEST(d["kind"] == "unsatisfied");
  BOOST_TEST(d["leases"].empty());
  BOOST_TEST(d["buffer_kib"] == 0);
  BOOST_TEST(d["mirror"].is_null());
  BOOST_TEST(d["reason"].get<std::string>().find("can lend only 4 GiB of 16 GiB") != std::string::npos);
}

// Exit status 2, nothing on stdout (never a partial plan), and one line on
// stderr naming the file and the key.
BOOST_AUTO_TEST_CASE(bad_scenarios_get_one_line_and_status_2) {
  TempDir dir;
  const std::string host = R"({ "name": "A", "memory_mib": 16384, "cpu_mhz": 8000 })";
  struct Case {
    const char* name;
    std::string text;
    const char* says;
  };
  std::vector<Case> cases{
      {"notjson.json", "{ hosts", "not valid JSON"},
      {"nohosts.json", R"({ "vms": [] })", "hosts: missing (required)"},
      {"unknownhost.json",
       R"({ "hosts": [ )" + host + R"( ], "vms": [ { "name": "V", "host": "Z", "memory_mib": 1, "cpu_mhz": 1 } ] })",
       "vms[0].host: unknown host \"Z\""},
      {"negative.json", R"({ "hosts": [ { "name": "A", "memory_mib": -16384, "cpu_mhz": 8000 } ] })",
       "hosts[0].memory_mib: must be between"},
      {"absurd.json", R"({ "hosts": [ { "name": "A", "memory_mib": 1099511627776, "cpu_mhz": 8000 } ] })",
       "hosts[0].memory_mib: must be at most"},
      {"heuristic.json", R"({ "settings": { "placement": "psychic" }, "hosts": [ )" + host + " ] }",
       "settings.placement: unknown value \"psychic\""},
      {"twohosts.json", R"({ "hosts": [ )" + host + ", " + host + " ] }", "hosts[1].name: \"A\" names two hosts"},
      {"dupkey.json", R"({ "hosts": [ )" + host + R"( ], "hosts": [ )" + host + " ] }",
       "key \"hosts\" appears twice"},
      {"unknownkey.json", R"({ "hosts": [ { "name": "A", "memory_mib": 1, "cpu_mhz": 1, "cpus": 4 } ] })",
       "hosts[0].cpus: unknown key"},
      {"wrongtype.json", R"({ "hosts": [ { "name": "A", "memory_mib": "lots", "cpu_mhz": 1 } ] })",
       "hosts[0].memory_mib: must be an integer, got a string"},
  };
  for (const auto& c : cases) {
    std::string file = dir.write(c.name, c.text);
    for (bool as_json : {false, true}) {
      std::vector<std::string> argv{bin, "plan", "--scenario", file};
      if (as_json) argv.push_back("--json");
      auto r = run_process(argv, 30);
      BOOST_TEST(r.status == 2, c.name);
      BOOST_TEST(r.out.empty(), c.name << ": " << r.out);
      BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, c.name << ": " << r.err);
      BOOST_TEST(r.err.rfind("memlend: " + file + ": ", 0) == 0u, r.err);
      BOOST_TEST(r.err.find(c.says) != std::string::npos, c.name << ": \"" << r.err << "\" says " << c.says);
    }
  }
  auto missing = run_process({bin, "plan", "--scenario", dir.path + "/absent.json"}, 30);
  BOOST_TEST(missing.status == 2);
  BOOST_TEST(missing.err.find(dir.path + "/absent.json: cannot open") != std::string::npos, missing.err);
  auto directory = run_process({bin, "plan", "--scenario", dir.path}, 30);
  BOOST_TEST(directory.status == 2);
  BOOST_TEST(directory.err.find("is a directory") != std::string::npos, directory.err);
}

// Files that never end: /dev/zero and /dev/urandom were read until memory ran
// out (abort, status 134), a FIFO waited for a writer forever. Now status 2
// and one line, at once. The wait is a bound, not a synchronisation.
BOOST_AUTO_TEST_CASE(a_scenario_that_is_not_a_regular_file_is_refused_at_once) {
  TempDir dir;
  std::string fifo = dir.path + "/cluster.json";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const auto& [file, kind] : {std::pair<std::string, std::string>{"/dev/zero", "a character device"},
                                   {"/dev/urandom", "a character device"},
                                   {fifo, "a FIFO"}}) {
    auto r = run_process({bin, "plan", "--scenario", file}, 30);
    BOOST_TEST_REQUIRE(!r.timed_out, file);
    BOOST_TEST(r.status == 2, file);
    BOOST_TEST(r.out.empty());
    BOOST_TEST(r.err == "memlend: " + file + ": is " + kind + "; the scenario file must be a regular file\n");
  }
}

// 2 MiB pages, 768 KiB blocks (not a power of two), 3 blocks per buffer:
// lcm(2048, 768) x 3 = 18 MiB per lease.
BOOST_AUTO_TEST_CASE(a_block_of_whole_pages_makes_the_lcm_buffer) {
  TempDir dir;
  auto file = dir.write("block.json", R"({
    "settings": { "page_size_kib": 2048, "rdma_block_kib": 768, "buffer_blocks": 3 },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 }, { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM2", "host": "A", "memory_mib": 65536, "cpu_mhz": 16000 } ] })");
  auto j = plan_json(file);
  BOOST_TEST(j["decisions"][0]["kind"] == "remote_memory");
  BOOST_TEST(j["decisions"][0]["buffer_kib"] == 18432);
}
