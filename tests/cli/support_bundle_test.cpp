// `memlend support-bundle` as support asks a node for it: the real binary on
// the store and the metrics of a real `memlend run`, with a config file that
// names secret files holding recognisable key bytes and PEM. The archive is
// opened with libarchive and every entry read.
#define BOOST_TEST_MODULE cli_support_bundle
#include <boost/test/unit_test.hpp>

#include "tests/persistence/support.hpp"
#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using memlend::test::Child;
using memlend::test::file_exists;
using memlend::test::read_file;
using memlend::test::run_process;
using memlend::test::TempDir;
using memlend::test::write_file;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";

// Key material the bundle must never hold, in the files the config names.
const std::string cluster_secret = "bundle-test-cluster-secret-5f0c2a9e71d4b83c";
const std::string donor_secret = "bundle-test-donor-secret-0a1b2c3d4e5f6789";
const std::string key_line_1 = "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDbundle";
const std::string key_line_2 = "QmVuZGxlVGVzdEtleUxpbmVUd29PZlRoZUZha2VLZXlCeXRlcw==";
const std::string key_pem =
    "-----BEGIN PRIVATE KEY-----\n" + key_line_1 + "\n" + key_line_2 + "\n-----END PRIVATE KEY-----\n";

// Every entry of a .tar.gz, by path.
std::map<std::string, std::string> entries_of(const std::string& path) {
  std::map<std::string, std::string> out;
  archive* a = archive_read_new();
  archive_read_support_filter_gzip(a);
  archive_read_support_format_tar(a);
  BOOST_TEST_REQUIRE(archive_read_open_filename(a, path.c_str(), 65536) == ARCHIVE_OK, archive_error_string(a));
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    std::string data;
    char buf[65536];
    for (la_ssize_t n; (n = archive_read_data(a, buf, sizeof buf)) > 0;) data.append(buf, static_cast<std::size_t>(n));
    out[archive_entry_pathname(e)] = data;
  }
  BOOST_TEST(rc == ARCHIVE_EOF, archive_error_string(a));
  archive_read_free(a);
  return out;
}

// The parts by name, without the bundle's top directory, which must be one for all.
std::map<std::string, std::string> parts_of(const std::string& path) {
  std::map<std::string, std::string> parts;
  std::string top;
  for (auto& [name, data] : entries_of(path)) {
    auto slash = name.find('/');
    BOOST_TEST_REQUIRE(slash != std::string::npos, name);
    if (top.empty()) top = name.substr(0, slash);
    BOOST_TEST(name.substr(0, slash) == top, name);
    BOOST_TEST(top.rfind("memlend-support-", 0) == 0u, top);
    if (slash + 1 < name.size()) parts[name.substr(slash + 1)] = data;
  }
  return parts;
}

void write_private(const std::string& path, const std::string& bytes) {
  write_file(path, bytes);
  ::chmod(path.c_str(), 0600);
}

// The files in `dir`, so that a refusal is seen to leave nothing behind.
std::set<std::string> listing(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

void expect_bad_input(const std::vector<std::string>& args, const std::string& names, const std::string& what) {
  std::vector<std::string> argv{bin, "support-bundle"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string wrong = memlend::test::bad_input_answer(argv, names, what);
  BOOST_TEST(wrong.empty(), wrong);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_bundle_of_a_running_controller_holds_every_part_and_no_key_material,
                     *boost::unit_test::timeout(300)) {
  TempDir dir("bundle");
  write_private(dir.file("cluster.secret"), cluster_secret + "\n");
  write_private(dir.file("donor.secret"), donor_secret);
  write_private(dir.file("node.key"), key_pem);
  const std::uint16_t port = memlend::test::free_loopback_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string db = dir.file("memlend.db");
  std::ofstream(dir.file("memlend.conf"))
      << "# the node's config\n"
      << "db = \"" << db << "\"\n"
      << "metrics = \"" << address << "\"\n"
      << "cluster-secret-file = \"" << dir.file("cluster.secret") << "\"\n"
      << "secret-file = '" << dir.file("donor.secret") << "'\n"
      << "tls-key = \"" << dir.file("node.key") << "\"\n"
      << "tls-cert = \"" << dir.file("node.pem") << "\"\n"
      << "# pasted here by mistake: " << cluster_secret << "\n"
      << "# " << key_pem.substr(0, key_pem.find('\n')) << "\n# " << key_line_1 << "\n# -----END PRIVATE KEY-----\n"
      << "platform = \"sim\"\nscenario = \"" << fig2 << "\"\nhost = \"A\"\n";

  Child run({bin, "run", "--scenario", fig2, "--db", db, "--metrics", address, "--speed", "50", "--for", "10h",
             "--quiet", "--data-path", "off", "--datastore", dir.file("datastore"), "--events-out",
             dir.file("events.jsonl")},
            dir.file("run"));
  // Bounded waits for the run to lend and to serve its metrics.
  bool ready = false;
  for (int i = 0; i < 600 && !ready && run.running(); ++i) {
    ready = file_exists(dir.file("events.jsonl")) &&
            read_file(dir.file("events.jsonl")).find("lease_granted") != std::string::npos &&
            memlend::test::http_get("127.0.0.1", port, "/metrics", 5).status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  BOOST_TEST_REQUIRE(ready, run.err());

  const std::string out = dir.file("node.tar.gz");
  auto made = run_process({bin, "support-bundle", out, "--config", dir.file("memlend.conf")}, 180);
  BOOST_TEST_REQUIRE(made.status == 0, made.err);
  BOOST_TEST(made.out.find(out + ": ") == 0u, made.out);
  run.stop();
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat(out.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);

  auto parts = parts_of(out);
  for (const char* name : {"MANIFEST", "memlend.conf", "check-config.txt", "state.json", "events.jsonl",
                           "metrics.txt", "versions.txt", "inspect.json"})
    BOOST_TEST(parts.count(name) == 1u, name << " is collected; MANIFEST:\n" << parts["MANIFEST"]);
  // The journal is there, or the line that says why not (no journald here).
  BOOST_TEST(parts.count("journal.txt") + parts.count("journal.txt.missing") == 1u);

  auto state = nlohmann::json::parse(parts["state.json"]);
  BOOST_TEST(state.at("hosts").size() == 3u);
  BOOST_TEST_REQUIRE(!state.at("leases").empty());
  BOOST_TEST(state["leases"][0].at("state") == "active");
  for (const auto& lease : state["leases"]) BOOST_TEST(!lease.contains("datapath_key"));
  std::istringstream events(parts["events.jsonl"]);
  bool granted = false;
  for (std::string line; std::getline(events, line);)
    granted = granted || nlohmann::json::parse(line).at("event") == "lease_granted";
  BOOST_TEST(granted, parts["events.jsonl"]);
  for (const char* family : {"# TYPE memlend_build_info", "# TYPE memlend_leases", "memlend_host_up{host=\"A\"} 1"})
    BOOST_TEST(parts["metrics.txt"].find(family) != std::string::npos, family);
  BOOST_TEST(parts["versions.txt"].rfind("memlend ", 0) == 0u, parts["versions.txt"]);
  BOOST_TEST(parts["versions.txt"].find("kernel: Linux") != std::string::npos, parts["versions.txt"]);
  auto inspect = nlohmann::json::parse(parts["inspect.json"]);
  BOOST_TEST(inspect.at("backend") == "sim");
  BOOST_TEST(inspect.at("host").at("name") == "A");

  const std::string& conf = parts["memlend.conf"];
  for (const char* line : {"cluster-secret-file = \"[redacted]\"\n", "secret-file = \"[redacted]\"\n",
                           "tls-key = \"[redacted]\"\n"})
    BOOST_TEST(conf.find(line) != std::string::npos, line << " in\n" << conf);
  BOOST_TEST(conf.find("metrics = \"" + address + "\"\n") != std::string::npos, conf);
  BOOST_TEST(conf.find("tls-cert = \"" + dir.file("node.pem") + "\"\n") != std::string::npos, conf);
  const std::string& manifest = parts["MANIFEST"];
  for (const char* line : {"state.json: collected", "events.jsonl: collected", "metrics.txt: collected, scraped",
                           "memlend.conf: collected, from", "inspect.json: collected, sim"})
    BOOST_TEST(manifest.find(line) != std::string::npos, line << " in\n" << manifest);

  // The config's comments held a secret and a key: both went.
  BOOST_TEST(manifest.find("scrubbed:  0 ") == std::string::npos, manifest);
  BOOST_TEST(manifest.find("secret:    cluster-secret-file: its file's bytes are removed") != std::string::npos);
  // No part holds key material: not the secrets' bytes, not a line of the key, no PEM.
  for (const auto& [name, data] : parts)
    for (const std::string& secret : {cluster_secret, donor_secret, key_line_1, key_line_2,
                                      std::string("PRIVATE KEY"), std::string("-----BEGIN")})
      BOOST_TEST(data.find(secret) == std::string::npos, name << " holds " << secret);
}

BOOST_AUTO_TEST_CASE(a_part_that_cannot_be_collected_says_why_and_the_bundle_is_still_written) {
  TempDir dir("bundle");
  // A store of schema version 1, as it is: its v_leases still has datapath_key.
  const std::string db = dir.file("old.db");
  write_file(db, read_file(std::string(MEMLEND_SOURCE_DIR) + "/tests/persistence/fixtures/v1.sqlite"));
  write_file(dir.file("memlend.conf"), "db = \"" + db + "\"\nmetrics = \"off\"\ntls-key = \"" +
                                           dir.file("no-such.key") + "\"\nno-such-option = 1\n");
  const std::string out = dir.file("b.tar.gz");
  auto made = run_process({bin, "support-bundle", out, "--config", dir.file("memlend.conf")}, 120);
  BOOST_TEST_REQUIRE(made.status == 0, made.err);
  auto parts = parts_of(out);
  BOOST_TEST(parts["metrics.txt.missing"].find("metrics = off") != std::string::npos, parts["metrics.txt.missing"]);
  BOOST_TEST(parts["inspect.json.missing"].find("no platform configured") != std::string::npos);
  BOOST_TEST(parts.count("versions.txt") == 1u);
  auto state = nlohmann::json::parse(parts["state.json"]);
  BOOST_TEST_REQUIRE(state.at("leases").size() == 3u);
  BOOST_TEST(parts["state.json"].find("datapath_key") == std::string::npos);
  BOOST_TEST(parts["state.json"].find("key=0x17") == std::string::npos);
  // Events of a fixture written long ago: none in the last hour.
  BOOST_TEST(parts["events.jsonl"].empty());
  const std::string& manifest = parts["MANIFEST"];
  BOOST_TEST(manifest.find("metrics.txt.missing: not collected: ") != std::string::npos, manifest);
  BOOST_TEST(manifest.find("secret:    tls-key: its file was not read") != std::string::npos, manifest);
  BOOST_TEST(manifest.find("config problem: ") == std::string::npos, manifest);
  BOOST_TEST(parts["check-config.txt"].find("unknown key no-such-option") != std::string::npos,
             parts["check-config.txt"]);

  // A store that is not there is a missing part too.
  write_file(dir.file("gone.conf"), "db = \"" + dir.file("gone.db") + "\"\nmetrics = \"off\"\n");
  made = run_process({bin, "support-bundle", dir.file("c.tar.gz"), "--config", dir.file("gone.conf")}, 120);
  BOOST_TEST_REQUIRE(made.status == 0, made.err);
  parts = parts_of(dir.file("c.tar.gz"));
  BOOST_TEST(parts["state.json.missing"].find("no such database") != std::string::npos);
  BOOST_TEST(parts["events.jsonl.missing"].find("no such database") != std::string::npos);
  BOOST_TEST(!file_exists(dir.file("gone.db")));
}

BOOST_AUTO_TEST_CASE(bad_input_gets_one_line_exit_status_2_and_leaves_no_file) {
  TempDir dir("bundle");
  write_file(dir.file("memlend.conf"), "metrics = \"off\"\n");
  const std::string conf = dir.file("memlend.conf");
  const std::string out = dir.file("b.tar.gz");
  write_file(out, "an earlier bundle");
  auto before = listing(dir.path);
  expect_bad_input({out, "--config", conf}, out, "exists; pass --force to replace it");
  BOOST_TEST(read_file(out) == "an earlier bundle");
  expect_bad_input({dir.file("no-such-dir/b.tar.gz"), "--config", conf}, dir.file("no-such-dir/b.tar.gz"),
                   "cannot write the bundle there (No such file or directory)");
  expect_bad_input({dir.path, "--config", conf, "--force"}, dir.path, "is not a regular file");
  expect_bad_input({dir.file("n.tar.gz"), "--config", dir.file("no-such.conf")}, dir.file("no-such.conf"),
                   "cannot open the config file");
  expect_bad_input({dir.file("n.tar.gz"), "--config", dir.path}, dir.path, "is a directory");
  expect_bad_input({dir.file("n.tar.gz"), "--config", conf, "--since", "yesterday"}, "--since",
                   "is not a duration");
  expect_bad_input({dir.file("n.tar.gz"), "--config", conf, "--metrics-url", "ftp://x/"}, "--metrics-url",
                   "is not an http:// or https:// URL");
  BOOST_TEST(listing(dir.path) == before);
  auto r = run_process({bin, "support-bundle"}, 60);
  BOOST_TEST(r.status == 2);

  // --force replaces it, whole.
  auto made = run_process({bin, "support-bundle", out, "--config", conf, "--force", "--db", dir.file("x.db")}, 120);
  BOOST_TEST_REQUIRE(made.status == 0, made.err);
  BOOST_TEST(parts_of(out).count("MANIFEST") == 1u);
  BOOST_TEST(listing(dir.path) == before);
}
