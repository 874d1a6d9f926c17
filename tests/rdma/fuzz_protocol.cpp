// libFuzzer target: the donor's side of the TCP protocol, fed bytes from the
// network. Built with clang (-fsanitize=fuzzer,address,undefined) by
// memlend_fuzzer (tests/CMakeLists.txt), which says how ctest runs it.
//
// The input is a series of records [flags][payload length:2][request:56]
// [payload]. A record whose flags ask for it is re-signed with the right key
// and given the next sequence number, so that the fuzzer gets past the tag
// check to the bounds checks, grants and releases behind it; the others go
// as they are.
#include "rdma/donor.hpp"
#include "rdma/protocol.hpp"
#include "rdma/session.hpp"

#include <cstring>
#include <vector>

using namespace memlend::rdma;

namespace {

class MemoryChannel : public Channel {
 public:
  explicit MemoryChannel(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
  Status read_exact(void* dst, std::size_t n) override {
    if (bytes_.size() - at_ < n) return memlend::Error{"end of input"};
    std::memcpy(dst, bytes_.data() + at_, n);
    at_ += n;
    return ok();
  }
  Status write_all(const iovec* iov, int count) override {
    // Touch every byte the donor would send, so that ASan sees any read past
    // a lease or the pool.
    for (int i = 0; i < count; ++i)
      for (std::size_t j = 0; j < iov[i].iov_len; ++j) sink_ ^= static_cast<const std::uint8_t*>(iov[i].iov_base)[j];
    return ok();
  }

 private:
  std::vector<std::uint8_t> bytes_;
  std::size_t at_ = 0;
  volatile std::uint8_t sink_ = 0;
};

const Secret pool_secret = [] {
  Secret s{};
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return s;
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The decoders on the raw bytes, at every size up to the input's.
  (void)wire::decode_hello(data, size);
  (void)wire::decode_request(data, size);
  (void)wire::decode_response(data, size);
  if (size >= wire::request_size) (void)wire::decode_request(data, wire::request_size);
  if (size >= wire::response_size) (void)wire::decode_response(data, wire::response_size);
  if (size >= wire::hello_size) (void)wire::decode_hello(data, wire::hello_size);

  auto pool = DonorPool::create(1 << 20, pool_secret);
  if (!pool) return 0;
  std::vector<LeaseGrant> leases;
  for (std::uint64_t bytes : {std::uint64_t{65536}, std::uint64_t{100}, std::uint64_t{4097}})
    if (auto g = (*pool)->grant(bytes)) leases.push_back(*g);
  wire::Nonce nonce{};
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::uint8_t>(0xA0 + i);

  std::vector<std::uint8_t> stream;
  std::size_t at = 0;
  std::uint64_t seq = 0;
  while (size - at >= 3 + wire::request_size) {
    std::uint8_t flags = data[at];
    std::size_t payload = data[at + 1] | (static_cast<std::size_t>(data[at + 2]) << 8);
    at += 3;
    std::uint8_t header[wire::request_size];
    std::memcpy(header, data + at, sizeof header);
    at += sizeof header;
    if (flags & 2) wire::store_le64(header + 32, ++seq);
    if (flags & 1) {
      auto op = static_cast<wire::Op>(header[5]);
      std::uint64_t lease = wire::load_le64(header + 8);
      const Secret* key = &pool_secret;
      if (!wire::pool_op(op))
        for (const auto& g : leases)
          if (g.id == lease) key = &g.secret;
      wire::Tag tag = wire::Mac(*key).tag(header, nonce);
      std::memcpy(header + wire::signed_size, tag.data(), tag.size());
    }
    stream.insert(stream.end(), header, header + sizeof header);
    payload = std::min(payload, size - at);
    stream.insert(stream.end(), data + at, data + at + payload);
    at += payload;
  }
  MemoryChannel channel(std::move(stream));
  DonorSession session(**pool, nonce);
  while (session.serve_one(channel)) {
  }
  return 0;
}
