#define BOOST_TEST_MODULE layout
#include <boost/test/unit_test.hpp>

// README's "## Layout" is the one statement of which room may include which:
// this test reads it rather than a copy, so that the table and the code cannot
// drift apart without a failure naming the file, the line and the rule.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path root = MEMLEND_SOURCE_DIR;
constexpr int max_lines = 700;

struct Layout {
  std::vector<std::string> rooms;   // bottom up: a room includes only from rooms before it
  std::set<std::string> beside;     // the second table: free to use any room
  int rank(const std::string& folder) const {
    auto it = std::find(rooms.begin(), rooms.end(), folder);
    return it == rooms.end() ? -1 : static_cast<int>(it - rooms.begin());
  }
};

// The section's tables, in order: first the rooms, then the folders beside them.
Layout read_layout() {
  std::ifstream in(root / "README.md");
  BOOST_TEST_REQUIRE(static_cast<bool>(in), "cannot read README.md");
  static const std::regex row(R"(^\|\s*`([^`/]+)/`\s*\|)");
  Layout layout;
  bool in_section = false, in_table = false;
  int table = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) {
      if (in_section) break;
      in_section = line == "## Layout";
      continue;
    }
    if (!in_section) continue;
    bool is_row = !line.empty() && line[0] == '|';
    if (is_row && !in_table) ++table;
    in_table = is_row;
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    if (table == 1)
      layout.rooms.push_back(m[1]);
    else
      layout.beside.insert(m[1]);
  }
  BOOST_TEST_REQUIRE(!layout.rooms.empty(), "README.md has no \"## Layout\" table of rooms");
  return layout;
}

bool is_source(const fs::path& p) { return p.extension() == ".cpp" || p.extension() == ".hpp"; }

// Build trees (build/, build-sanitize/, ...) and hidden folders hold no code of ours.
bool skipped(const std::string& top) { return top.empty() || top[0] == '.' || top.rfind("build", 0) == 0; }

// Every source file of the tree, as a path relative to the root.
std::vector<fs::path> sources() {
  std::vector<fs::path> out;
  for (const auto& top : fs::directory_iterator(root)) {
    if (!top.is_directory() || skipped(top.path().filename().string())) continue;
    for (const auto& e : fs::recursive_directory_iterator(top.path()))
      if (e.is_regular_file() && is_source(e.path())) out.push_back(fs::relative(e.path(), root));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string top_folder(const fs::path& rel) { return rel.begin()->string(); }

}  // namespace

BOOST_AUTO_TEST_CASE(every_folder_with_code_is_in_the_layout) {
  Layout layout = read_layout();
  std::set<std::string> seen;
  for (const auto& f : sources()) seen.insert(top_folder(f));
  for (const auto& folder : seen) {
    if (folder == "tests" || folder == "bench") continue;
    if (layout.rank(folder) < 0 && !layout.beside.count(folder))
      BOOST_ERROR(folder << "/: holds .cpp/.hpp files but is neither a room nor a folder beside them in "
                            "README.md's Layout");
  }
}

BOOST_AUTO_TEST_CASE(rooms_include_only_from_rooms_above_them) {
  Layout layout = read_layout();
  std::set<std::string> folders;
  for (const auto& top : fs::directory_iterator(root))
    if (top.is_directory()) folders.insert(top.path().filename().string());
  static const std::regex include(R"(^\s*#\s*include\s*"([^"/]+)/)");
  for (const auto& f : sources()) {
    std::string own = top_folder(f);
    int own_rank = layout.rank(own);
    if (own_rank < 0) continue;  // tests, bench and the rest may use any room
    std::ifstream in(root / f);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      if (!std::regex_search(line, m, include)) continue;
      std::string to = m[1];
      int to_rank = layout.rank(to);
      if (to_rank < 0 && !folders.count(to)) continue;  // a library's header, not one of ours
      if (to_rank < 0)
        BOOST_ERROR(f.string() << ":" << n << ": includes " << to << "/, which is not a room: a room includes "
                               << "only from rooms");
      else if (to_rank > own_rank)
        BOOST_ERROR(f.string() << ":" << n << ": includes " << to << "/, a room below " << own
                               << "/ in README.md's Layout: a room includes only from rooms above it");
    }
  }
}

BOOST_AUTO_TEST_CASE(source_files_outside_tests_are_at_most_700_lines) {
  for (const auto& f : sources()) {
    if (top_folder(f) == "tests") continue;
    std::ifstream in(root / f);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) ++n;
    if (n > max_lines)
      BOOST_ERROR(f.string() << ":" << max_lines + 1 << ": " << n << " lines, more than the " << max_lines
                             << " a source file outside tests/ may have");
  }
}
