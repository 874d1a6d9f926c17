#include "cli/support_bundle.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <mutex>

namespace memlend::cli {

namespace {

bool key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'; }

std::string_view trimmed(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

constexpr std::size_t shortest_secret = 8;
constexpr std::size_t shortest_secret_line = 16;
constexpr std::string_view removed_mark = "[key material removed by memlend support-bundle]";

}  // namespace

bool names_secret(std::string_view key) {
  for (std::string_view word : {"secret", "password", "passwd", "token", "credential", "private"})
    if (key.find(word) != std::string_view::npos) return true;
  return key == "key" || ends_with(key, "-key") || ends_with(key, "_key");
}

std::string redact_config(const std::string& text, std::size_t* redacted) {
  std::string out;
  out.reserve(text.size());
  std::size_t from = 0;
  while (from < text.size()) {
    std::size_t end = text.find('\n', from);
    std::size_t next = end == std::string::npos ? text.size() : end + 1;
    std::string_view line(text.data() + from, (end == std::string::npos ? text.size() : end) - from);
    // [spaces] [# [spaces]] key [spaces] = value: a key set, or one commented out.
    std::size_t i = line.find_first_not_of(" \t");
    if (i != std::string_view::npos && line[i] == '#') i = line.find_first_not_of(" \t", i + 1);
    std::size_t key_end = i;
    while (key_end != std::string_view::npos && key_end < line.size() && key_char(line[key_end])) ++key_end;
    std::size_t eq = key_end == std::string_view::npos ? key_end : line.find_first_not_of(" \t", key_end);
    if (i != std::string_view::npos && key_end > i && eq != std::string_view::npos && line[eq] == '=' &&
        names_secret(line.substr(i, key_end - i))) {
      out.append(line.substr(0, eq + 1));
      out += " \"[redacted]\"";
      if (end != std::string::npos) out += '\n';
      if (redacted) ++*redacted;
    } else {
      out.append(text, from, next - from);
    }
    from = next;
  }
  return out;
}

void Scrubber::add_secret(const std::string& bytes) {
  auto add = [this](std::string_view s, std::size_t shortest) {
    if (s.size() < shortest) return;
    if (std::find(needles_.begin(), needles_.end(), s) == needles_.end()) needles_.emplace_back(s);
  };
  add(trimmed(bytes), shortest_secret);
  std::string_view rest(bytes);
  while (!rest.empty()) {
    std::size_t end = rest.find('\n');
    add(trimmed(rest.substr(0, end)), shortest_secret_line);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
  }
  // The whole before its lines, so that a secret goes as one.
  std::stable_sort(needles_.begin(), needles_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::string Scrubber::scrub(std::string text, std::size_t* removed) const {
  std::size_t count = 0;
  static constexpr std::string_view begin = "-----BEGIN ", end = "-----END ";
  for (std::size_t at = text.find(begin); at != std::string::npos; at = text.find(begin, at)) {
    std::size_t stop = text.find(end, at + begin.size());
    if (stop != std::string::npos) {
      // Past the END line's closing dashes, or its end of line.
      std::size_t dashes = text.find("-----", stop + end.size());
      std::size_t eol = text.find('\n', stop);
      stop = dashes != std::string::npos && (eol == std::string::npos || dashes < eol) ? dashes + 5 : eol;
    }
    if (stop == std::string::npos) stop = text.size();
    text.replace(at, stop - at, removed_mark);
    at += removed_mark.size();
    ++count;
  }
  for (const auto& needle : needles_) {
    for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at)) {
      text.replace(at, needle.size(), removed_mark);
      at += removed_mark.size();
      ++count;
    }
  }
  if (removed) *removed += count;
  return text;
}

namespace {

// libcurl's global set-up is not thread-safe: once, before the first handle.
void init_curl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Received {
  std::string body;
  std::size_t max_bytes = 0;
  bool too_much = false;
};

std::size_t receive(char* data, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<Received*>(user);
  std::size_t bytes = size * n;
  if (r->body.size() + bytes > r->max_bytes) {
    r->too_much = true;
    return 0;  // ends the transfer with CURLE_WRITE_ERROR
  }
  r->body.append(data, bytes);
  return bytes;
}

}  // namespace

Expected<std::string> http_get_text(const std::string& url, std::chrono::milliseconds timeout,
                                    std::size_t max_bytes) {
  init_curl();
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Error{url + ": libcurl could not start a transfer"};
  Received r;
  r.max_bytes = max_bytes;
  char error[CURL_ERROR_SIZE] = "";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, receive);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "memlend support-bundle");
  CURLcode rc = curl_easy_perform(c);
  if (r.too_much) return Error{url + ": the answer is larger than " + std::to_string(max_bytes) + " bytes"};
  if (rc != CURLE_OK) return Error{url + ": " + (error[0] ? std::string(error) : curl_easy_strerror(rc))};
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) return Error{url + ": HTTP status " + std::to_string(status)};
  return std::move(r.body);
}

Expected<void> write_bundle(int fd, const std::string& top, const std::vector<BundlePart>& parts) {
  std::unique_ptr<archive, int (*)(archive*)> a(archive_write_new(), archive_write_free);
  if (!a) return Error{"libarchive could not start an archive"};
  auto failed = [&] {
    const char* why = archive_error_string(a.get());
    return Error{why ? why : "libarchive failed"};
  };
  if (archive_write_add_filter_gzip(a.get()) != ARCHIVE_OK || archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK ||
      archive_write_open_fd(a.get(), fd) != ARCHIVE_OK)
    return failed();
  const std::time_t now = std::time(nullptr);
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(), archive_entry_free);
  auto header = [&](const std::string& path, mode_t type, mode_t perm, la_int64_t size) {
    archive_entry_clear(e.get());
    archive_entry_set_pathname(e.get(), path.c_str());
    archive_entry_set_filetype(e.get(), type);
    archive_entry_set_perm(e.get(), perm);
    archive_entry_set_size(e.get(), size);
    archive_entry_set_mtime(e.get(), now, 0);
    return archive_write_header(a.get(), e.get()) == ARCHIVE_OK;
  };
  if (!header(top + "/", AE_IFDIR, 0700, 0)) return failed();
  for (const auto& p : parts) {
    std::string body = p.collected ? p.content : p.content + "\n";
    std::string name = top + "/" + p.name + (p.collected ? "" : ".missing");
    if (!header(name, AE_IFREG, 0600, static_cast<la_int64_t>(body.size()))) return failed();
    for (std::size_t done = 0; done < body.size();) {
      la_ssize_t n = archive_write_data(a.get(), body.data() + done, body.size() - done);
      if (n <= 0) return failed();
      done += static_cast<std::size_t>(n);
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return failed();
  return {};
}

std::string bundle_library_versions() {
  init_curl();
  return std::string(archive_version_details()) + "\n" + curl_version() + "\n";
}

}  // namespace memlend::cli
