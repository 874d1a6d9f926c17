#define BOOST_TEST_MODULE package
#include <boost/test/unit_test.hpp>

// The Debian package as an operator gets it: built by CPack, checked by
// lintian, unpacked with dpkg-deb into a scratch root, its unit verified by
// systemd itself against that root, and its binary run.

#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <pwd.h>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using memlend::test::Child;
using memlend::test::find_program;
using memlend::test::make_temp_dir;
using memlend::test::ProcessResult;
using memlend::test::run_process;

namespace {

const std::string source_dir = MEMLEND_SOURCE_DIR;

std::string need(const std::string& name) {
  std::string p = find_program(name);
  BOOST_TEST_REQUIRE(!p.empty(), name << " is on PATH (install packaging/test-packages.txt: packaging/build.sh deps)");
  return p;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  BOOST_TEST_REQUIRE(lstat(path.c_str(), &st) == 0, path << " exists");
  return st.st_mode & 07777;
}

// One package for every test case: building it is the slow part.
struct Package {
  std::string dir = make_temp_dir("package");
  std::string deb;
  std::string dbgsym;
  std::string root = dir + "/root";
  std::string cpack_log;

  // Both packages unpacked into one root, as they are installed together.
  Package() {
    auto r = run_process({CPACK_COMMAND, "-G", "DEB", "--config", CPACK_CONFIG, "-B", dir + "/out"}, 600);
    cpack_log = r.out + r.err;
    for (const auto& e : fs::directory_iterator(dir + "/out")) {
      if (e.path().extension() != ".deb") continue;
      (e.path().filename().string().rfind("memlend-dbgsym_", 0) == 0 ? dbgsym : deb) = e.path().string();
    }
    fs::create_directories(root);
    for (const auto& d : {deb, dbgsym})
      if (!d.empty()) run_process({find_program("dpkg-deb"), "-x", d, root}, 120);
  }
  ~Package() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  ProcessResult packaged(std::vector<std::string> args) const {
    args.insert(args.begin(), root + "/usr/bin/memlend");
    return run_process(args, 60);
  }
};

Package& package() {
  static Package p;
  BOOST_TEST_REQUIRE(!p.deb.empty(), "cpack made a .deb:\n" << p.cpack_log);
  return p;
}

}  // namespace

BOOST_AUTO_TEST_CASE(cpack_builds_a_deb_and_its_dbgsym_that_lintian_accepts) {
  auto& p = package();
  BOOST_TEST(fs::path(p.deb).filename().string().rfind("memlend_", 0) == 0u, p.deb);
  BOOST_TEST_REQUIRE(!p.dbgsym.empty(), "cpack made memlend-dbgsym_*.deb beside it:\n" << p.cpack_log);
  // Warnings fail too: the few that are meant are overridden in the package,
  // with the reason beside them (packaging/debian/lintian-overrides).
  auto r = run_process({need("lintian"), "--fail-on", "error,warning", "--tag-display-limit", "0", p.deb, p.dbgsym},
                       600);
  BOOST_TEST(r.status == 0, "lintian:\n" << r.out << r.err);
}

BOOST_AUTO_TEST_CASE(the_package_holds_the_files_with_their_modes) {
  auto& p = package();
  struct Want {
    std::string path;
    unsigned mode;
  };
  for (const auto& w : std::vector<Want>{{"/usr/bin/memlend", 0755},
                                         {"/etc/memlend/memlend.conf", 0644},
                                         {"/etc/memlend/agent.conf", 0644},
                                         {"/lib/systemd/system/memlend.service", 0644},
                                         {"/lib/systemd/system/memlend-agent.service", 0644},
                                         {"/usr/share/man/man1/memlend-agent.1.gz", 0644},
                                         {"/lib/udev/rules.d/60-memlend.rules", 0644},
                                         {"/var/lib/memlend", 0700},
                                         {"/usr/share/man/man1/memlend.1.gz", 0644},
                                         {"/usr/share/man/man1/memlend-run.1.gz", 0644},
                                         {"/usr/share/bash-completion/completions/memlend", 0644},
                                         {"/usr/share/doc/memlend/copyright", 0644},
                                         {"/usr/share/doc/memlend/changelog.gz", 0644},
                                         {"/usr/share/memlend/memlend-alerts.yml", 0644},
                                         {"/usr/share/memlend/memlend-dashboard.json", 0644},
                                         {"/usr/share/memlend/runbooks.md", 0644},
                                         {"/usr/share/lintian/overrides/memlend", 0644}})
    BOOST_TEST(mode_of(p.root + w.path) == w.mode, w.path << std::oct << ": mode " << mode_of(p.root + w.path));
  BOOST_TEST(fs::is_directory(p.root + "/var/lib/memlend"));
  BOOST_TEST(fs::is_empty(p.root + "/var/lib/memlend"));
  BOOST_TEST(slurp(p.root + "/etc/memlend/memlend.conf") == slurp(source_dir + "/packaging/memlend.conf"));
  BOOST_TEST(slurp(p.root + "/etc/memlend/agent.conf") == slurp(source_dir + "/packaging/agent.conf"));

  // Owned by root, whoever built it.
  auto listing = run_process({need("dpkg-deb"), "-c", p.deb}, 60);
  BOOST_TEST(listing.status == 0);
  std::istringstream lines(listing.out);
  std::string line;
  while (std::getline(lines, line)) BOOST_TEST(line.find(" root/root ") != std::string::npos, line);

  // The config files are conffiles: an upgrade keeps the operator's edits.
  auto conffiles = run_process({need("dpkg-deb"), "-I", p.deb, "conffiles"}, 60);
  BOOST_TEST(conffiles.out == "/etc/memlend/memlend.conf\n/etc/memlend/agent.conf\n");
  auto control = run_process({need("dpkg-deb"), "-f", p.deb, "Package", "Version", "Depends"}, 60);
  BOOST_TEST(control.out.find("Package: memlend\n") != std::string::npos, control.out);
  BOOST_TEST(control.out.find("Depends: adduser, ") != std::string::npos, control.out);
  // dpkg-shlibdeps names every library the binary links: support-bundle's too.
  for (const char* library : {" libc6 ", " libarchive13 ", " libcurl4 "})
    BOOST_TEST(control.out.find(library) != std::string::npos, library << " in " << control.out);
}

BOOST_AUTO_TEST_CASE(systemd_verifies_the_unit_against_the_unpacked_package) {
  auto& p = package();
  std::string units = p.root + "/lib/systemd/system";
  std::string unit = slurp(units + "/memlend.service");
  for (const char* line : {"Restart=on-failure", "ProtectSystem=strict", "ReadWritePaths=/var/lib/memlend",
                           "NoNewPrivileges=yes", "ExecStart=/usr/bin/memlend run --config /etc/memlend/memlend.conf",
                           "ExecStartPre=/usr/bin/memlend check-config --config /etc/memlend/memlend.conf",
                           "Type=notify", "WatchdogSec=30s", "RestartPreventExitStatus=2", "User=memlend",
                           "CapabilityBoundingSet=", "DeviceAllow=/dev/userfaultfd rw"})
    BOOST_TEST(unit.find(std::string(line) + "\n") != std::string::npos, line);
  std::string agent = slurp(units + "/memlend-agent.service");
  for (const char* line : {"Restart=on-failure", "RestartPreventExitStatus=2", "NoNewPrivileges=yes",
                           "ExecStart=/usr/bin/memlend agent --config /etc/memlend/agent.conf",
                           "ExecStartPre=/usr/bin/memlend check-config --for agent --config /etc/memlend/agent.conf",
                           "DevicePolicy=closed", "RuntimeDirectoryPreserve=yes"})
    BOOST_TEST(agent.find(std::string(line) + "\n") != std::string::npos, line);

  // --root makes systemd check ExecStart's binary inside the scratch root;
  // the targets and slices a service depends on come from this machine's
  // systemd, as they would on the node. MANPATH lets it find the package's
  // man page for Documentation=.
  std::string systemd_units = "/lib/systemd/system";
  for (const auto& e : fs::directory_iterator(systemd_units)) {
    auto ext = e.path().extension();
    if ((ext == ".target" || ext == ".slice") && !fs::exists(units + "/" + e.path().filename().string()))
      fs::copy(e.path(), units + "/" + e.path().filename().string(), fs::copy_options::copy_symlinks);
  }
  std::string analyze = need("systemd-analyze");
  for (const char* name : {"memlend.service", "memlend-agent.service"}) {
    auto verify = run_process({"/usr/bin/env", "MANPATH=" + p.root + "/usr/share/man", analyze, "verify",
                               "--root=" + p.root, name},
                              120);
    BOOST_TEST(verify.status == 0, name << ": " << verify.out << verify.err);
    // A mistyped or ill-valued directive is only a warning to systemd: none is allowed.
    BOOST_TEST(verify.err == "", name << ": " << verify.err);

    // The hardening holds as packaged: systemd's own score (0 best, 10 worst)
    // under 5, MEDIUM's floor (service_unit_test asserts the words).
    auto security = run_process({analyze, "security", "--offline=yes", "--root=" + p.root, "--threshold=49", name},
                                120);
    BOOST_TEST(security.status == 0, name << ": " << security.out << security.err);
  }

  // The check has teeth: without the binary the unit does not verify.
  fs::rename(p.root + "/usr/bin/memlend", p.root + "/usr/bin/memlend.away");
  auto missing = run_process({"/usr/bin/env", "MANPATH=" + p.root + "/usr/share/man", analyze, "verify",
                              "--root=" + p.root, "memlend.service"},
                             120);
  fs::rename(p.root + "/usr/bin/memlend.away", p.root + "/usr/bin/memlend");
  BOOST_TEST(missing.status != 0);
  BOOST_TEST(missing.err.find("/usr/bin/memlend") != std::string::npos, missing.err);
}

BOOST_AUTO_TEST_CASE(the_packaged_binary_plans_a_sample_scenario) {
  auto& p = package();
  auto r = p.packaged({"plan", "--scenario", source_dir + "/examples/fig2.json", "--json"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  auto j = nlohmann::json::parse(r.out);
  BOOST_TEST(j["decisions"].size() == 1u);
  BOOST_TEST(j["decisions"][0]["kind"] == "remote_memory");
  BOOST_TEST(j["decisions"][0]["leases"][0]["donor"] == "B");
  BOOST_TEST(j["decisions"][0]["leases"][0]["mib"] == 49152);

  // The shipped config file, as it is, is one memlend reads.
  r = p.packaged({"plan", "--config", p.root + "/etc/memlend/memlend.conf", "--scenario",
                  source_dir + "/examples/fig2.json"});
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.err == "");
  r = p.packaged({"check-config", "--config", p.root + "/etc/memlend/memlend.conf"});
  BOOST_TEST(r.status == 0, r.err);

  auto v = p.packaged({"version"});
  BOOST_TEST(v.out == "memlend " MEMLEND_VERSION "\n");
}

namespace {

// The commands of memlend's --help, and the long options of one command's.
std::set<std::string> commands_of(const Package& p) {
  auto top = p.packaged({"--help"});
  std::regex command_line("^  ([a-z][a-z-]*) ");
  std::set<std::string> commands;
  std::istringstream lines(top.out.substr(top.out.find("Subcommands:")));
  std::smatch m;
  for (std::string line; std::getline(lines, line);)
    if (std::regex_search(line, m, command_line)) commands.insert(m[1]);
  return commands;
}

std::set<std::string> options_of(const Package& p, const std::string& command) {
  auto help = p.packaged({command, "--help"});
  std::set<std::string> out;
  std::istringstream lines(help.out.substr(help.out.find("Options:")));
  // An entry's own names ("-h,--help"), not the options its description mentions.
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  -", 0) != 0) continue;
    std::istringstream names(line.substr(2, line.find(' ', 2) - 2));
    for (std::string name; std::getline(names, name, ',');)
      if (name.rfind("--", 0) == 0) out.insert(name);
  }
  return out;
}

// `man -l` of a page as a reader sees it; every warning groff has about the page is on stderr.
ProcessResult man_page(const std::string& path) {
  return run_process({"/usr/bin/env", "LC_ALL=C", "MANWIDTH=250", need("man"), "--warnings", "-l", path}, 60);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_command_has_its_man_page_with_every_option) {
  auto& p = package();
  std::string dir = p.root + "/usr/share/man/man1/";
  auto commands = commands_of(p);
  BOOST_TEST(commands.count("plan") == 1u);
  BOOST_TEST(commands.count("run") == 1u);
  auto top = man_page(dir + "memlend.1.gz");
  BOOST_TEST_REQUIRE(top.status == 0, top.err);
  BOOST_TEST(top.err == "", "memlend(1) renders without a warning");
  std::set<std::string> pages{"memlend.1.gz"};
  for (const auto& c : commands) {
    pages.insert("memlend-" + c + ".1.gz");
    auto page = man_page(dir + "memlend-" + c + ".1.gz");
    BOOST_TEST_REQUIRE(page.status == 0, c << ": " << page.err);
    BOOST_TEST(page.err == "", "memlend-" << c << "(1) renders without a warning");
    BOOST_TEST(page.out.find("memlend-" + c + " - ") != std::string::npos, "memlend-" << c << "(1)'s NAME");
    for (const auto& o : options_of(p, c))
      BOOST_TEST(page.out.find(o) != std::string::npos, "memlend-" << c << "(1) has " << o);
    // memlend(1) points at it, among its commands and in SEE ALSO.
    auto see_also = top.out.substr(top.out.find("SEE ALSO"));
    BOOST_TEST(top.out.find("memlend-" + c + "(1)") < top.out.find("SEE ALSO"), c);
    BOOST_TEST(see_also.find("memlend-" + c + "(1)") != std::string::npos, c);
  }
  // No page of a command memlend does not have.
  std::set<std::string> shipped;
  for (const auto& e : fs::directory_iterator(dir)) shipped.insert(e.path().filename().string());
  BOOST_TEST(shipped == pages);
  for (const char* section : {"COMMANDS", "CONFIGURATION FILE", "LOGGING", "METRICS", "FILES", "EXIT STATUS"})
    BOOST_TEST(top.out.find(section) != std::string::npos, section);
}

BOOST_AUTO_TEST_CASE(bash_completes_commands_options_and_their_values) {
  auto& p = package();
  std::string completion = p.root + "/usr/share/bash-completion/completions/memlend";
  auto loaded = run_process({need("bash"), "-c", "source " + completion + " && complete -p memlend"}, 60);
  BOOST_TEST_REQUIRE(loaded.status == 0, loaded.err);
  BOOST_TEST(loaded.out == "complete -F _memlend memlend\n");
  BOOST_TEST(loaded.err == "");

  // What bash offers at the end of a command line, sorted, one per line;
  // in a directory with one file and one directory in it.
  std::string cwd = p.dir + "/completing";
  fs::create_directories(cwd + "/a-dir");
  std::ofstream(cwd + "/a-file.conf") << "\n";
  auto offered = [&](const std::string& line) {
    std::string script = "source " + completion +
                         " && COMP_WORDS=(" + line + ") && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && _memlend && "
                         "printf '%s\\n' \"${COMPREPLY[@]}\" | LC_ALL=C sort";
    auto r = run_process({need("bash"), "-c", script}, 60, cwd);
    BOOST_TEST(r.status == 0, line << ": " << r.err);
    std::set<std::string> out;
    std::istringstream lines(r.out);
    for (std::string w; std::getline(lines, w);)
      if (!w.empty()) out.insert(w);
    return out;
  };
  auto commands = commands_of(p);
  BOOST_TEST(offered("memlend ''") == commands);
  BOOST_TEST(offered("memlend ru") == std::set<std::string>{"run"});
  for (const auto& c : commands) {
    auto longs = offered("memlend " + c + " --");
    BOOST_TEST(longs == options_of(p, c), "memlend " << c << " --<TAB>");
  }
  using S = std::set<std::string>;
  BOOST_TEST(offered("memlend run --log-level ''") == (S{"debug", "error", "info", "off", "trace", "warn"}));
  BOOST_TEST(offered("memlend run --log-level = d") == S{"debug"});
  BOOST_TEST(offered("memlend donor --transport ''") == (S{"auto", "tcp", "verbs"}));
  BOOST_TEST(offered("memlend inspect --platform ''") == (S{"exec", "libvirt", "qemu", "sim"}));
  BOOST_TEST(offered("memlend run --data-path ''") == (S{"off", "on"}));
  BOOST_TEST(offered("memlend run --config ''") == (S{"a-dir", "a-file.conf"}));
  BOOST_TEST(offered("memlend check-config --config a-f") == S{"a-file.conf"});
  BOOST_TEST(offered("memlend run --datastore ''") == S{"a-dir"});
  BOOST_TEST(offered("memlend run --for ''").empty());
}

namespace {

std::string build_id(const std::string& elf) {
  auto r = run_process({"/usr/bin/env", "LC_ALL=C", need("readelf"), "-n", elf}, 60);
  std::smatch m;
  return std::regex_search(r.out, m, std::regex("Build ID: ([0-9a-f]+)")) ? m[1].str() : std::string();
}

std::string sections_of(const std::string& elf) {
  return run_process({"/usr/bin/env", "LC_ALL=C", need("readelf"), "-S", "-W", elf}, 60).out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_dbgsym_holds_the_debug_info_of_the_binary_the_package_ships) {
  auto& p = package();
  BOOST_TEST_REQUIRE(!p.dbgsym.empty(), p.cpack_log);
  std::string bin = p.root + "/usr/bin/memlend";
  std::string id = build_id(bin);
  BOOST_TEST_REQUIRE(id.size() >= 8u, "the shipped binary has a build-id");
  // Where gdb, eu-stack and systemd-coredump look for it by that build-id.
  std::string debug = p.root + "/usr/lib/debug/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug";
  BOOST_TEST_REQUIRE(fs::exists(debug), debug);
  BOOST_TEST(build_id(debug) == id);
  BOOST_TEST(mode_of(debug) == 0644u);
  // The shipped binary is stripped and names its debug file; the debug file holds it all.
  auto shipped = sections_of(bin);
  BOOST_TEST(shipped.find(".debug_info") == std::string::npos, shipped);
  BOOST_TEST(shipped.find(".symtab") == std::string::npos, shipped);
  auto link = run_process({need("readelf"), "-p", ".gnu_debuglink", bin}, 60);
  BOOST_TEST(link.out.find(id.substr(2) + ".debug") != std::string::npos, link.out << link.err);
  auto split = sections_of(debug);
  BOOST_TEST(split.find(".debug_info") != std::string::npos);
  BOOST_TEST(split.find(".symtab") != std::string::npos);
  auto control = run_process({need("dpkg-deb"), "-f", p.dbgsym}, 60).out;
  for (std::string field : {"Package: memlend-dbgsym", "Depends: memlend (= " MEMLEND_VERSION ")", "Section: debug",
                            "Auto-Built-Package: debug-symbols"})
    BOOST_TEST(control.find(field + "\n") != std::string::npos, control);
  BOOST_TEST(control.find("Build-Ids: " + id + "\n") != std::string::npos, control);
}

namespace {

boost::test_tools::assertion_result has_gdb(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result ok(!find_program("gdb").empty() && !find_program("gcore").empty());
  ok.message() << "gdb and gcore are not installed (Debian's gdb package; packaging/test-packages.txt)";
  return ok;
}

}  // namespace

// What support does with a core dump of the packaged controller: gdb with the
// dbgsym's files gives every frame of memlend its function and source line;
// without them, addresses.
BOOST_AUTO_TEST_CASE(gdb_reads_a_core_of_the_packaged_binary_with_the_dbgsym,
                     *boost::unit_test::precondition(has_gdb)) {
  auto& p = package();
  std::string dir = p.dir + "/core";
  fs::create_directories(dir + "/no-debug");
  Child::Options opts;
  opts.workdir = dir;
  // One malloc arena, not one per thread: the core holds every mapping, and
  // 64 MiB of untouched arena per thread would make it hundreds of MiB.
  Child running({"/usr/bin/env", "MALLOC_ARENA_MAX=1", p.root + "/usr/bin/memlend", "run", "--scenario",
                 source_dir + "/examples/fig2.json", "--for", "1h", "--speed", "1", "--no-db", "--metrics", "off",
                 "--data-path", "off"},
                opts);
  BOOST_TEST_REQUIRE(!running.wait_stdout("memlend: running", std::chrono::seconds(60)).empty(), running.err());
  std::string pid = std::to_string(running.pid());
  auto gcore = run_process({find_program("gcore"), "-o", dir + "/core", pid}, 300);
  running.stop();
  std::string core = dir + "/core." + pid;
  BOOST_TEST_REQUIRE(fs::exists(core), gcore.out << gcore.err);
  auto backtraces = [&](const std::string& debug_dir) {
    return run_process({find_program("gdb"), "-batch", "-nx", "-iex", "set debug-file-directory " + debug_dir, "-ex",
                        "thread apply all bt", p.root + "/usr/bin/memlend", core},
                       300)
        .out;
  };
  auto with = backtraces(p.root + "/usr/lib/debug");
  BOOST_TEST(std::regex_search(with, std::regex(R"(memlend::run_actors \(.* at [^ ]*node/controller\.cpp:[0-9]+)")),
             with);
  BOOST_TEST(std::regex_search(with, std::regex(R"(main \(.* at [^ ]*cli/main\.cpp:[0-9]+)")), with);
  auto without = backtraces(dir + "/no-debug");
  BOOST_TEST(without.find("run_actors") == std::string::npos, without);
  BOOST_TEST(without.find("controller.cpp") == std::string::npos, without);
  fs::remove(core);
}

// Every key the shipped config file lists (commented out, with its default)
// is an option memlend takes: uncommented, the file loads. `run` takes the
// keys once it adopts cli/config_file.hpp, cli/logging.hpp and
// cli/metrics_option.hpp; until then this case is skipped.
BOOST_AUTO_TEST_CASE(every_key_of_the_shipped_config_file_is_an_option,
                     *boost::unit_test::precondition([](boost::unit_test::test_unit_id) {
                       auto help = run_process({MEMLEND_BINARY, "run", "--help"}, 30).out;
                       return help.find("--config") != std::string::npos &&
                              help.find("--metrics") != std::string::npos &&
                              help.find("--log-level") != std::string::npos;
                     })) {
  auto& p = package();
  std::string text = slurp(p.root + "/etc/memlend/memlend.conf");
  std::string uncommented;
  std::istringstream lines(text);
  std::string line;
  std::regex key_line("^#([a-z][a-z0-9-]*) = (.*)$");
  std::smatch m;
  std::size_t keys = 0;
  while (std::getline(lines, line)) {
    if (!std::regex_match(line, m, key_line)) continue;
    ++keys;
    // Paths in the defaults need not exist for the check: run --help reads nothing.
    uncommented += m[1].str() + " = " + m[2].str() + "\n";
  }
  BOOST_TEST(keys >= 10u);
  std::string file = p.dir + "/uncommented.conf";
  std::ofstream(file) << uncommented;
  auto r = p.packaged({"run", "--config", file, "--scenario", source_dir + "/examples/fig2.json", "--show-scenario"});
  BOOST_TEST(r.status == 0, r.err);
}

namespace {

// Installing touches the machine itself: only as root, and never over a memlend
// that an operator installed (the test would purge it afterwards).
boost::test_tools::assertion_result may_install(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result ok(true);
  if (::geteuid() != 0) {
    ok = false;
    ok.message() << "installing a package needs root";
    return ok;
  }
  auto q = run_process({"/usr/bin/dpkg-query", "-W", "-f=${Status}", "memlend"}, 60);
  if (q.status == 0 && q.out.find("installed") != std::string::npos && q.out.find("not-installed") == std::string::npos) {
    ok = false;
    ok.message() << "memlend is installed on this machine (" << q.out << "); the test would replace and purge it";
  }
  return ok;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_deb_installs_runs_and_purges, *boost::unit_test::precondition(may_install)) {
  auto& p = package();
  struct Purge {
    bool had_user = ::getpwnam("memlend") != nullptr;
    ~Purge() {
      run_process({"/usr/bin/dpkg", "--purge", "memlend-dbgsym", "memlend"}, 300);
      // Purging leaves the package's user (postrm says why); one this test made goes.
      if (!had_user) run_process({"/usr/sbin/deluser", "--system", "--quiet", "memlend"}, 60);
    }
  } purge_whatever_happens;
  BOOST_TEST_REQUIRE(!p.dbgsym.empty());
  auto r = run_process({need("dpkg"), "-i", p.deb, p.dbgsym}, 300);
  BOOST_TEST_REQUIRE(r.status == 0, "dpkg -i:\n" << r.out << r.err);
  auto status = run_process({need("dpkg-query"), "-W", "-f=${Status}\n", "memlend", "memlend-dbgsym"}, 60);
  BOOST_TEST(status.out == "install ok installed\ninstall ok installed\n");
  // gdb finds the installed binary's symbols by its build-id, with no help.
  if (!find_program("gdb").empty()) {
    auto info = run_process({find_program("gdb"), "-batch", "-nx", "-ex", "info line memlend::cli::bad_input",
                             "/usr/bin/memlend"},
                            300);
    BOOST_TEST(info.out.find("Line ") != std::string::npos, info.out << info.err);
    BOOST_TEST(info.err.find("not defined") == std::string::npos, info.err);
  }
  auto v = run_process({"/usr/bin/memlend", "version"}, 60);
  BOOST_TEST(v.out == "memlend " MEMLEND_VERSION "\n", v.err);
  BOOST_TEST(mode_of("/var/lib/memlend") == 0700u);
  BOOST_TEST(fs::exists("/etc/memlend/memlend.conf"));

  // The service's user: a system account in a group of its own, with no
  // shell, which the udev rule gives /dev/userfaultfd.
  const passwd* pw = ::getpwnam("memlend");
  BOOST_TEST_REQUIRE(pw != nullptr, "postinst made the user memlend");
  BOOST_TEST(pw->pw_uid < 1000u);
  BOOST_TEST(std::string(pw->pw_shell) == "/usr/sbin/nologin");
  const group* gr = ::getgrgid(pw->pw_gid);
  BOOST_TEST_REQUIRE(gr != nullptr);
  BOOST_TEST(std::string(gr->gr_name) == "memlend");
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  BOOST_TEST(slurp("/lib/udev/rules.d/60-memlend.rules").find("GROUP=\"memlend\"") != std::string::npos);
  // Installing again (an upgrade's postinst) keeps that user as it is.
  r = run_process({need("dpkg"), "-i", p.deb}, 300);
  BOOST_TEST_REQUIRE(r.status == 0, "dpkg -i again:\n" << r.out << r.err);
  BOOST_TEST(::getpwnam("memlend")->pw_uid == uid);

  auto plan = run_process({"/usr/bin/memlend", "plan", "--config", "/etc/memlend/memlend.conf", "--scenario",
                           source_dir + "/examples/fig2.json", "--json"},
                          60);
  BOOST_TEST(plan.status == 0, plan.err);
  // Support's first command, with no flags and from anywhere, finds the
  // installed store: none yet, then the one a run of the service's shape made.
  auto none = run_process({"/usr/bin/memlend", "state"}, 60, "/");
  BOOST_TEST(none.status == 2);
  BOOST_TEST(none.err.find("/var/lib/memlend/memlend.db") != std::string::npos, none.err);
  // As the unit runs it, with no systemd here to start it: StateDirectory=
  // hands the state directory to memlend, then ExecStartPre= and a run of
  // ExecStart='s shape as memlend with no capability. (Its data path needs
  // the udev rule applied, which needs udev; service_unit_test runs it.)
  BOOST_TEST_REQUIRE(::chown("/var/lib/memlend", uid, gid) == 0);
  std::vector<std::string> as_unit{need("setpriv"), "--reuid=memlend", "--regid=memlend", "--clear-groups",
                                   "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
                                   "--", "/usr/bin/memlend"};
  auto as = [&](std::vector<std::string> args) {
    args.insert(args.begin(), as_unit.begin(), as_unit.end());
    return args;
  };
  auto check = run_process(as({"check-config", "--config", "/etc/memlend/memlend.conf"}), 60, "/var/lib/memlend");
  BOOST_TEST(check.status == 0, check.err);
  auto ran = run_process(as({"run", "--config", "/etc/memlend/memlend.conf", "--scenario",
                             source_dir + "/examples/fig2.json", "--for", "30", "--speed", "100", "--quiet",
                             "--metrics", "off", "--data-path", "off"}),
                         120, "/var/lib/memlend");
  BOOST_TEST(ran.status == 0, ran.err);
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat("/var/lib/memlend/memlend.db", &st) == 0);
  BOOST_TEST(st.st_uid == uid);
  BOOST_TEST((st.st_mode & 077) == 0u);
  auto state = run_process({"/usr/bin/memlend", "state", "--json"}, 60, "/");
  BOOST_TEST_REQUIRE(state.status == 0, state.err);
  BOOST_TEST(nlohmann::json::parse(state.out)["hosts"].size() == 3u, state.out);

  r = run_process({need("dpkg"), "--purge", "memlend-dbgsym", "memlend"}, 300);
  BOOST_TEST(r.status == 0, "dpkg --purge:\n" << r.out << r.err);
  std::string id = build_id(p.root + "/usr/bin/memlend");
  BOOST_TEST(!fs::exists("/usr/lib/debug/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug"));
  BOOST_TEST(!fs::exists("/usr/bin/memlend"));
  BOOST_TEST(!fs::exists("/etc/memlend/memlend.conf"));
  BOOST_TEST(!fs::exists("/lib/udev/rules.d/60-memlend.rules"));
  BOOST_TEST(!fs::exists("/var/lib/memlend"));  // purging takes the store with it, as postrm says
  BOOST_TEST(::getpwnam("memlend") != nullptr);
}

// Every alert points at a runbook section the package ships, and every
// section belongs to an alert: an operator paged at night follows the link.
BOOST_AUTO_TEST_CASE(every_alert_has_its_runbook_and_every_runbook_its_alert) {
  std::set<std::string> alerts, urls, sections;
  std::istringstream rules(slurp(source_dir + "/packaging/memlend-alerts.yml"));
  std::string line;
  const std::string prefix = "file:///usr/share/memlend/runbooks.md#";
  while (std::getline(rules, line)) {
    if (auto at = line.find("- alert: "); at != std::string::npos) alerts.insert(line.substr(at + 9));
    if (auto at = line.find(prefix); at != std::string::npos)
      urls.insert(line.substr(at + prefix.size(), line.find('"', at) - at - prefix.size()));
  }
  std::istringstream book(slurp(source_dir + "/packaging/runbooks.md"));
  while (std::getline(book, line))
    if (line.rfind("## ", 0) == 0) sections.insert(line.substr(3));
  BOOST_TEST(alerts.size() >= 7u);
  BOOST_TEST(alerts == sections);
  std::set<std::string> anchors;
  for (auto a : alerts) {
    std::transform(a.begin(), a.end(), a.begin(), [](unsigned char c) { return std::tolower(c); });
    anchors.insert(a);
  }
  BOOST_TEST(urls == anchors);
}
