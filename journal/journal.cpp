#include "journal/journal.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend {

std::string event_json_line(const LogEvent& e) {
  nlohmann::ordered_json j;
  if (std::floor(e.t_s) == e.t_s && std::abs(e.t_s) < 1e15)
    j["t_s"] = static_cast<std::int64_t>(e.t_s);
  else
    j["t_s"] = std::round(e.t_s * 1000) / 1000;
  j["event"] = e.event;
  if (!e.vm.empty()) j["vm"] = e.vm;
  if (!e.host.empty()) j["host"] = e.host;
  if (!e.donor.empty()) j["donor"] = e.donor;
  if (e.mib >= 0) j["mib"] = e.mib;
  if (!e.reason.empty()) j["reason"] = e.reason;
  return j.dump();
}

store::LeaseRecord lease_record(const LeaseInfo& l) {
  store::LeaseRecord r;
  r.id = l.id;
  r.vm = l.vm;
  r.donor = l.donor;
  r.recipient = l.recipient;
  r.mib = l.mib;
  r.state = l.state;
  r.transport = std::string(to_string(l.transport));
  r.epoch = std::max<std::uint64_t>(l.epoch, 1);
  // Where the lease is, for a restart; never its secret (the store is copied
  // into support bundles): a restarted controller derives it again from the
  // donor's pool secret once the donor's agent has joined.
  nlohmann::json key;
  if (!l.data.addr.empty()) key = {{"addr", l.data.addr}, {"id", l.data.id}, {"epoch", l.data.epoch}};
  if (l.replaces) key["replaces"] = l.replaces;
  r.datapath_key = key.is_null() ? std::string() : key.dump();
  return r;
}

LeaseInfo lease_info(const store::LeaseRecord& r) {
  LeaseInfo l;
  l.id = r.id;
  l.vm = r.vm;
  l.donor = r.donor;
  l.recipient = r.recipient;
  l.mib = r.mib;
  l.state = r.state;
  l.epoch = r.epoch;
  // The store checks the column (`transport IN ('rdma', 'tcp')`).
  l.transport = parse_transport(r.transport).value_or(Transport::tcp);
  auto key = nlohmann::json::parse(r.datapath_key.empty() ? "{}" : r.datapath_key, nullptr, false);
  if (key.is_object()) {
    l.data.addr = key.value("addr", "");
    l.data.id = key.value("id", std::uint64_t{0});
    l.data.epoch = key.value("epoch", std::uint64_t{0});
    l.replaces = key.value("replaces", std::uint64_t{0});
  }
  return l;
}

store::EventRecord event_record(const LogEvent& e) {
  store::EventRecord r;
  r.t_s = e.t_s;
  r.event = e.event;
  r.vm = e.vm;
  r.host = e.host;
  r.donor = e.donor;
  if (e.mib >= 0) r.mib = e.mib;
  r.reason = e.reason;
  return r;
}

LogEvent log_event(const store::EventRecord& r) {
  LogEvent e;
  e.t_s = r.t_s;
  e.event = r.event;
  e.vm = r.vm;
  e.host = r.host;
  e.donor = r.donor;
  e.mib = r.mib.value_or(-1);
  e.reason = r.reason;
  return e;
}

Expected<int> open_events_file(const std::string& path, EventsFile mode) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
  if (fd < 0 && errno == ELOOP) return Error{path + ": is a symbolic link; name the file itself"};
  if (fd < 0) return Error{path + ": cannot write (" + std::strerror(errno) + ")"};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{path + ": not a regular file; the event log is written to one"};
  }
  if (mode == EventsFile::empty && ::ftruncate(fd, 0) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd);
    return Error{path + ": cannot empty it (" + why + ")"};
  }
  return fd;
}

std::optional<std::string> catch_up_events_file(const std::string& path, const store::Store& store) {
  auto opened = open_events_file(path, EventsFile::keep);
  if (!opened) return opened.error().message;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{*opened};
  const int fd = *opened;
  std::string text;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return path + ": cannot read the event log (" + std::strerror(errno) + ")";
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  std::size_t whole = text.empty() || text.back() == '\n' ? text.size()
                      : text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  std::uint64_t lines = static_cast<std::uint64_t>(std::count(text.begin(), text.begin() + whole, '\n'));
  auto missing = store.events(lines);
  if (!missing) return missing.error().message;
  std::string more;
  for (const auto& r : *missing) more += event_json_line(log_event(r)) + "\n";
  if (::ftruncate(fd, static_cast<off_t>(whole)) != 0)
    return path + ": cannot write the event log (" + std::strerror(errno) + ")";
  for (std::size_t at = 0; at < more.size();) {
    ssize_t n = ::write(fd, more.data() + at, more.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return path + ": cannot write the event log (" + std::strerror(errno) + ")";
    at += static_cast<std::size_t>(n);
  }
  return std::nullopt;
}

store::HostRecord host_record(const policy::Host& h, policy::HostId id, bool up) {
  store::HostRecord r;
  r.id = id;
  r.name = h.name;
  r.memory_mib = h.memory_mib;
  r.cpu_mhz = h.cpu_mhz;
  r.reserved_mib = h.reserved_mib;
  r.rdma = h.rdma;
  r.data_path = h.data_path;
  r.up = up;
  r.fabric = h.fabric;
  return r;
}

policy::Host host_of_record(const store::HostRecord& r) {
  policy::Host h;
  h.name = r.name;
  h.memory_mib = r.memory_mib;
  h.cpu_mhz = r.cpu_mhz;
  h.reserved_mib = r.reserved_mib;
  h.rdma = r.rdma;
  h.data_path = r.data_path;
  h.fabric = r.fabric;
  h.up = r.up;
  return h;
}

std::string scenario_fingerprint(const std::string& scenario_text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(scenario_text.data(), scenario_text.size(), digest, &len, EVP_sha256(), nullptr);
  std::string hex;
  char b[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", digest[i]);
    hex += b;
  }
  return "sha256:" + hex;
}

}  // namespace memlend
