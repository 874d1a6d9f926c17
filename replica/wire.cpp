#include "replica/wire.hpp"

#include <cstring>

namespace memlend::replica {

namespace {

constexpr std::uint64_t rows_part = 0xeeeeeeeeeeeeeeeeULL;
constexpr std::uint64_t rows_done = 0xffffffffffffffffULL;

// Type codes of a value in a tuple: SQLite's, and dqlite's three of its own.
enum : std::uint8_t {
  t_integer = 1,
  t_float = 2,
  t_text = 3,
  t_blob = 4,
  t_null = 5,
  t_unixtime = 9,
  t_iso8601 = 10,
  t_boolean = 11,
};

std::size_t pad8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

Error bad(const std::string& what) { return Error{"dqlite response: " + what, ErrorCode::invalid_input}; }

// Reads a body front to back; every read checks what is left first, and a
// failed read leaves the cursor where it was.
class Cursor {
 public:
  Cursor(const std::uint8_t* p, std::size_t n) : p_(p), left_(n) {}
  std::size_t left() const { return left_; }

  Expected<std::uint64_t> u64(const char* what) { return little_endian(8, what); }
  Expected<std::uint32_t> u32(const char* what) {
    auto v = little_endian(4, what);
    if (!v) return v.error();
    return static_cast<std::uint32_t>(*v);
  }
  Expected<std::string> text(const char* what) {
    const void* nul = std::memchr(p_, 0, left_);
    if (!nul) return bad(std::string("unterminated ") + what);
    std::size_t len = static_cast<const std::uint8_t*>(nul) - p_;
    std::size_t padded = pad8(len + 1);
    if (padded > left_) return bad(std::string("short padding after ") + what);
    std::string s(reinterpret_cast<const char*>(p_), len);
    skip(padded);
    return s;
  }
  Expected<Blob> blob(const char* what) {
    auto len = u64(what);
    if (!len) return len.error();
    // Compare before padding: a length near 2^64 would wrap round.
    if (*len > left_ || pad8(*len) > left_) {
      p_ -= 8, left_ += 8;
      return bad(std::string("blob longer than its message: ") + what);
    }
    Blob b;
    b.bytes.assign(p_, p_ + *len);
    skip(pad8(*len));
    return b;
  }
  const std::uint8_t* take(std::size_t n) {
    const std::uint8_t* at = p_;
    skip(n);
    return at;
  }
  Expected<std::uint64_t> peek_u64() {
    auto v = u64("marker");
    if (v) p_ -= 8, left_ += 8;
    return v;
  }

 private:
  Expected<std::uint64_t> little_endian(std::size_t bytes, const char* what) {
    if (left_ < bytes) return bad(std::string("short ") + what);
    std::uint64_t v = 0;
    for (std::size_t i = bytes; i-- > 0;) v = (v << 8) | p_[i];
    skip(bytes);
    return v;
  }
  void skip(std::size_t n) { p_ += n, left_ -= n; }
  const std::uint8_t* p_;
  std::size_t left_;
};

Expected<void> must_end(const Cursor& c, const char* what) {
  if (c.left() != 0) return bad(std::to_string(c.left()) + " bytes left over in " + what);
  return {};
}

Expected<Value> decode_value(Cursor& c, std::uint8_t type) {
  switch (type) {
    case t_integer:
    case t_unixtime:
    case t_boolean: {
      auto v = c.u64("integer");
      if (!v) return v.error();
      return Value{static_cast<std::int64_t>(*v)};
    }
    case t_float: {
      auto v = c.u64("float");
      if (!v) return v.error();
      double d;
      std::memcpy(&d, &*v, sizeof d);
      return Value{d};
    }
    case t_text:
    case t_iso8601: {
      auto s = c.text("text value");
      if (!s) return s.error();
      return Value{std::move(*s)};
    }
    case t_blob: {
      auto b = c.blob("blob value");
      if (!b) return b.error();
      return Value{std::move(*b)};
    }
    case t_null: {
      auto v = c.u64("null");
      if (!v) return v.error();
      return Value{Null{}};
    }
  }
  return bad("unknown value type " + std::to_string(type));
}

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

}  // namespace

std::string_view to_string(Role role) {
  switch (role) {
    case Role::voter: return "voter";
    case Role::standby: return "standby";
    case Role::spare: return "spare";
  }
  return "unknown";
}

void Body::pad() {
  while (bytes_.size() % 8) bytes_.push_back(0);
}

Body& Body::u64(std::uint64_t v) {
  put_u64(bytes_, v);
  return *this;
}

Body& Body::text(std::string_view s) {
  if (s.find('\0') != std::string_view::npos && status_)
    status_ = Error{"dqlite request: text holds a NUL byte", ErrorCode::invalid_input};
  bytes_.insert(bytes_.end(), s.begin(), s.end());
  bytes_.push_back(0);
  pad();
  return *this;
}

Body& Body::params(const std::vector<Value>& values) {
  if (values.size() > 255) {
    if (status_) status_ = Error{"dqlite request: more than 255 parameters", ErrorCode::invalid_input};
    return *this;
  }
  bytes_.push_back(static_cast<std::uint8_t>(values.size()));
  for (const auto& v : values) {
    static constexpr std::uint8_t codes[] = {t_null, t_integer, t_float, t_text, t_blob};
    bytes_.push_back(codes[v.index()]);
  }
  pad();
  for (const auto& v : values) {
    if (std::holds_alternative<Null>(v)) {
      u64(0);
    } else if (auto i = std::get_if<std::int64_t>(&v)) {
      u64(static_cast<std::uint64_t>(*i));
    } else if (auto d = std::get_if<double>(&v)) {
      std::uint64_t bits;
      std::memcpy(&bits, d, sizeof bits);
      u64(bits);
    } else if (auto s = std::get_if<std::string>(&v)) {
      text(*s);
    } else {
      const auto& b = std::get<Blob>(v).bytes;
      u64(b.size());
      bytes_.insert(bytes_.end(), b.begin(), b.end());
      pad();
    }
  }
  return *this;
}

std::vector<std::uint8_t> Body::message(Request type) const {
  std::vector<std::uint8_t> out;
  out.reserve(header_bytes + bytes_.size());
  std::uint32_t words = static_cast<std::uint32_t>(bytes_.size() / 8);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(words >> (8 * i)));
  out.push_back(static_cast<std::uint8_t>(type));
  out.insert(out.end(), {0, 0, 0});
  out.insert(out.end(), bytes_.begin(), bytes_.end());
  return out;
}

Expected<Header> decode_header(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto words = c.u32("header");
  if (!words) return words.error();
  if (c.left() != 4) return bad("a header is 8 bytes");
  Header h;
  h.words = *words;
  const std::uint8_t* rest = c.take(4);
  h.type = rest[0];
  h.schema = rest[1];
  return h;
}

Expected<Failure> decode_failure(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto code = c.u64("failure code");
  if (!code) return code.error();
  auto message = c.text("failure message");
  if (!message) return message.error();
  if (auto end = must_end(c, "failure"); !end) return end.error();
  return Failure{*code, std::move(*message)};
}

Expected<NodeInfo> decode_server(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto id = c.u64("server id");
  if (!id) return id.error();
  auto address = c.text("server address");
  if (!address) return address.error();
  if (auto end = must_end(c, "server"); !end) return end.error();
  NodeInfo info;
  info.id = *id;
  info.address = std::move(*address);
  return info;
}

Expected<std::uint64_t> decode_welcome(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto timeout = c.u64("welcome");
  if (!timeout) return timeout.error();
  if (auto end = must_end(c, "welcome"); !end) return end.error();
  return *timeout;
}

Expected<std::uint32_t> decode_db(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto id = c.u32("db id");
  if (!id) return id.error();
  auto pad = c.u32("db padding");
  if (!pad) return pad.error();
  if (auto end = must_end(c, "db"); !end) return end.error();
  return *id;
}

Expected<ExecResult> decode_result(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto last = c.u64("last insert id");
  if (!last) return last.error();
  auto affected = c.u64("rows affected");
  if (!affected) return affected.error();
  if (auto end = must_end(c, "result"); !end) return end.error();
  return ExecResult{*last, *affected};
}

Expected<void> decode_empty(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto unused = c.u64("empty");
  if (!unused) return unused.error();
  return must_end(c, "empty");
}

Expected<std::vector<NodeInfo>> decode_servers(const std::uint8_t* p, std::size_t n) {
  Cursor c(p, n);
  auto count = c.u64("server count");
  if (!count) return count.error();
  // Each server takes at least three words: a count beyond that is a lie,
  // and must not size an allocation.
  if (*count > c.left() / 24) return bad("server count " + std::to_string(*count) + " exceeds the message");
  std::vector<NodeInfo> out;
  out.reserve(*count);
  for (std::uint64_t i = 0; i < *count; ++i) {
    NodeInfo info;
    auto id = c.u64("server id");
    if (!id) return id.error();
    auto address = c.text("server address");
    if (!address) return address.error();
    auto role = c.u64("server role");
    if (!role) return role.error();
    if (*role > 2) return bad("unknown role " + std::to_string(*role));
    info.id = *id;
    info.address = std::move(*address);
    info.role = static_cast<Role>(*role);
    out.push_back(std::move(info));
  }
  if (auto end = must_end(c, "servers"); !end) return end.error();
  return out;
}

Expected<bool> decode_rows(const std::uint8_t* p, std::size_t n, Rows& into) {
  Cursor c(p, n);
  auto columns = c.u64("column count");
  if (!columns) return columns.error();
  // A column takes at least a word for its name.
  if (*columns == 0 || *columns > c.left() / 8) return bad("column count " + std::to_string(*columns) + " out of range");
  std::vector<std::string> names;
  names.reserve(*columns);
  for (std::uint64_t i = 0; i < *columns; ++i) {
    auto name = c.text("column name");
    if (!name) return name.error();
    names.push_back(std::move(*name));
  }
  if (into.columns.empty() && into.rows.empty())
    into.columns = std::move(names);
  else if (names != into.columns)
    return bad("a later batch of rows names other columns");
  std::size_t width = into.columns.size();
  // A row starts with a type code in 4 bits per column, padded to a word.
  std::size_t header = pad8((width + 1) / 2);
  for (;;) {
    auto marker = c.peek_u64();
    if (!marker) return bad("rows end with no end marker");
    if (*marker == rows_done || *marker == rows_part) {
      c.take(8);
      if (auto end = must_end(c, "rows"); !end) return end.error();
      return *marker == rows_part;
    }
    if (c.left() < header) return bad("short row header");
    const std::uint8_t* types = c.take(header);
    std::vector<Value> row;
    row.reserve(width);
    for (std::size_t i = 0; i < width; ++i) {
      std::uint8_t type = (i % 2 == 0) ? (types[i / 2] & 0x0f) : (types[i / 2] >> 4);
      auto v = decode_value(c, type);
      if (!v) return v.error();
      row.push_back(std::move(*v));
    }
    into.rows.push_back(std::move(row));
  }
}

}  // namespace memlend::replica
