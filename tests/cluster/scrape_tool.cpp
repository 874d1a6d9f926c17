// Scrapes an HTTP endpoint from inside one of the test's namespaces (the test
// process itself lives outside them): prints the body of a 200 answer, or
// the reason there was none and exits 1.
//
//   scrape_tool HOST PORT PATH
#include "tests/support/http_get.hpp"

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: scrape_tool HOST PORT PATH\n";
    return 2;
  }
  auto r = memlend::test::http_get(argv[1], static_cast<std::uint16_t>(std::stoul(argv[2])), argv[3], 10);
  if (r.status != 200) {
    std::cerr << "scrape_tool: status " << r.status << " " << r.error << '\n';
    return 1;
  }
  std::cout << r.body;
  return 0;
}
