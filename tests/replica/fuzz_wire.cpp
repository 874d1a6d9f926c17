// libFuzzer target: memlend's decoder of dqlite's responses, fed bytes from
// the network. Built with clang (-fsanitize=fuzzer,address,undefined) by
// memlend_fuzzer (tests/CMakeLists.txt), which says how ctest runs it.
//
// The input is [response type:1][body...]: the body goes to the decoder of
// that type (any type the client expects, as a lying peer would choose), the
// ROWS decoder twice, as a first and a later batch of one result.
#include "replica/wire.hpp"

#include <cstddef>
#include <cstdint>

using namespace memlend::replica;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t* body = data + 1;
  std::size_t n = size - 1;
  (void)decode_header(body, n < header_bytes ? n : header_bytes);
  switch (static_cast<Response>(data[0] % 9)) {
    case Response::failure: (void)decode_failure(body, n); break;
    case Response::server: (void)decode_server(body, n); break;
    case Response::welcome: (void)decode_welcome(body, n); break;
    case Response::servers: (void)decode_servers(body, n); break;
    case Response::db: (void)decode_db(body, n); break;
    case Response::result: (void)decode_result(body, n); break;
    case Response::rows: {
      Rows rows;
      auto more = decode_rows(body, n, rows);
      if (more) (void)decode_rows(body, n, rows);
      break;
    }
    case Response::empty: (void)decode_empty(body, n); break;
    default: break;
  }
  return 0;
}
