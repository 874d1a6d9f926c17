// The pieces of `memlend support-bundle` that know nothing of memlend's
// commands: a config file with its secrets' values replaced, key material
// scrubbed from text, a metrics scrape, and the archive itself.
#pragma once

#include "core/expected.hpp"

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace memlend::cli {

// One file of the bundle: what it holds when collected, else why not.
struct BundlePart {
  std::string name;     // its file in the bundle; "<name>.missing" holds the reason instead
  bool collected = false;
  std::string content;  // the part, or the one line that says why it is missing
  std::string detail;   // for the MANIFEST: "12 events", "2 values redacted"
};

// Whether a config key names a secret or a key (cluster-secret-file,
// secret-file, tls-key, anything with password or token): its value is not
// shown, and its file is read only to scrub its bytes from the bundle.
bool names_secret(std::string_view key);

// A config file's text with the value of every key that names a secret, set
// or commented out, replaced by "[redacted]"; the key and every other line
// stay as they are. `redacted` counts the values replaced.
std::string redact_config(const std::string& text, std::size_t* redacted = nullptr);

// Removes key material from text: PEM blocks ("-----BEGIN ...-----" through
// its END line, or to the end of the text when there is none) and the bytes
// of every secret it was given, whole and line by line.
class Scrubber {
 public:
  // A secret file's contents: the whole (surrounding whitespace trimmed) and
  // each of its lines of 16 bytes or more. Shorter than 8 bytes is too common
  // a string to remove everywhere, and is ignored.
  void add_secret(const std::string& bytes);
  // `text` without key material; `removed`, when given, grows by the number
  // of places removed.
  std::string scrub(std::string text, std::size_t* removed = nullptr) const;

 private:
  std::vector<std::string> needles_;  // longest first
};

// GET `url` (http or https only, no redirects), waiting at most `timeout`
// for the whole answer and taking at most `max_bytes` of it. An error is one
// line: the transfer's or a status other than 200.
Expected<std::string> http_get_text(const std::string& url, std::chrono::milliseconds timeout,
                                    std::size_t max_bytes);

// Writes the parts as one gzip-compressed tar (POSIX pax) to `fd`, each under
// the directory `top`, mode 0600; a missing part as "<name>.missing".
Expected<void> write_bundle(int fd, const std::string& top, const std::vector<BundlePart>& parts);

// The versions of the libraries the bundle itself uses (libarchive, libcurl).
std::string bundle_library_versions();

}  // namespace memlend::cli
