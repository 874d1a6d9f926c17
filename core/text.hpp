// Text that reaches a person: one line per message, whatever it quotes.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace memlend {

// Whether one_line() would leave `message` as it is: what a sample says
// every period is checked, and copied only when it must change.
inline bool is_one_line(std::string_view message) {
  for (unsigned char c : message)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

// A message as one printable line: names and keys from a file or a flag are
// echoed in messages, and may hold a newline or a terminal's escape sequence.
inline std::string one_line(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace memlend
