// What a flood of connections that never authenticate costs a real client:
// the latency of a donor handshake (connect, hello, one signed request and
// its answer, as DonorClient::connect does) with no idle connections open,
// with 1,000 open under the default cap on unauthenticated connections, and
// with 1,000 open and the cap lifted (every one held by a thread, as the
// server did before it had a cap), side by side in one run.
//   bench_handshake [--idle N] [--samples N]
#include "rdma/donor.hpp"
#include "rdma/net.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/resource.h>
#include <vector>

using namespace memlend;
using namespace memlend::rdma;

namespace {

struct Row {
  double p50 = 0, p99 = 0, max = 0;
  int failed = 0;
  ServerStats stats;
};

Row measure(std::size_t cap, int idle, int samples) {
  auto secret = random_secret();
  auto pool = DonorPool::create(16 << 20, secret);
  if (!pool) {
    std::fprintf(stderr, "bench_handshake: %s\n", pool.error().message.c_str());
    std::exit(1);
  }
  ServerOptions o;
  o.transport = TransportKind::tcp;
  o.max_unauthenticated = cap;
  o.hello_timeout = Millis(600000);  // the flood stays for the whole measurement
  auto server = DonorServer::start(*pool, o);
  if (!server) {
    std::fprintf(stderr, "bench_handshake: %s\n", server.error().message.c_str());
    std::exit(1);
  }
  std::string address = (*server)->address();
  std::vector<UniqueFd> flood;
  for (int i = 0; i < idle; ++i) {
    auto fd = net::connect_tcp(address, Millis(5000));
    if (!fd) {
      std::fprintf(stderr, "bench_handshake: idle connection %d: %s\n", i, fd.error().message.c_str());
      std::exit(1);
    }
    flood.push_back(std::move(*fd));
  }
  Row row;
  std::vector<double> us;
  for (int i = 0; i < samples; ++i) {
    auto t0 = Clock::now();
    auto c = DonorClient::connect(address, secret);
    double d = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (!c) {
      ++row.failed;
      continue;
    }
    us.push_back(d);
  }
  std::sort(us.begin(), us.end());
  if (!us.empty()) {
    row.p50 = us[us.size() / 2];
    row.p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
    row.max = us.back();
  }
  row.stats = (*server)->stats();
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int idle = 1000, samples = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--idle") idle = std::max(0, std::atoi(argv[i + 1]));
    else if (a == "--samples") samples = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: bench_handshake [--idle N] [--samples N]\n");
      return 2;
    }
  }
  // Both ends of every idle connection live in this process.
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);

  std::size_t cap = ServerOptions{}.max_unauthenticated;
  std::printf("memlend donor handshake (connect, hello, one signed request), %d samples each, loopback\n", samples);
  std::printf("%-40s %10s %10s %10s %7s %9s %12s\n", "", "p50 us", "p99 us", "max us", "failed", "evicted",
              "idle held");
  auto print = [](const char* label, const Row& r) {
    std::printf("%-40s %10.1f %10.1f %10.1f %7d %9llu %12llu\n", label, r.p50, r.p99, r.max, r.failed,
                static_cast<unsigned long long>(r.stats.evicted),
                static_cast<unsigned long long>(r.stats.unauthenticated));
  };
  print("no idle connections", measure(cap, 0, samples));
  std::string with = std::to_string(idle) + " idle, cap " + std::to_string(cap) + " (default)";
  print(with.c_str(), measure(cap, idle, samples));
  std::string without = std::to_string(idle) + " idle, no cap (a thread each)";
  print(without.c_str(), measure(static_cast<std::size_t>(idle) + samples + 1, idle, samples));
  return 0;
}
