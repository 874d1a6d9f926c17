// The builder of the view's reasons and the figures in them, shared by
// cluster.cpp and cluster_placement.cpp; no other room needs it.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace memlend::policy::detail {

struct Mib {
  std::int64_t v;
};
struct Mhz {
  std::int64_t v;
};

// Every decision of a pass carries its reason, so reasons are built without
// streams (a stream costs a locale and several allocations each): on the
// stack, then copied once into a string of the exact size.
class Text {
 public:
  Text& operator<<(std::string_view v) {
    if (big_.empty() && n_ + v.size() <= sizeof small_) {
      std::memcpy(small_ + n_, v.data(), v.size());
      n_ += v.size();
      return *this;
    }
    if (big_.empty()) big_.assign(small_, n_);
    big_.append(v);
    return *this;
  }
  Text& operator<<(const char* v) { return *this << std::string_view(v); }
  Text& operator<<(const std::string& v) { return *this << std::string_view(v); }
  template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
  Text& operator<<(T v) {
    char buf[24];
    auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return *this << std::string_view(buf, static_cast<std::size_t>(end - buf));
  }
  Text& operator<<(Mib m) {
    if (m.v != 0 && m.v % 1024 == 0) return *this << m.v / 1024 << " GiB";
    return *this << m.v << " MiB";
  }
  Text& operator<<(Mhz m) {
    if (m.v != 0 && m.v % 1000 == 0) return *this << m.v / 1000 << " GHz";
    return *this << m.v << " MHz";
  }
  std::string take() { return big_.empty() ? std::string(small_, n_) : std::move(big_); }

 private:
  char small_[256];
  std::size_t n_ = 0;
  std::string big_;  // once the reason outgrows small_
};

// "the cluster" or "fabric r1".
struct Where {
  const std::string& fabric;
};
inline Text& operator<<(Text& t, Where w) { return w.fabric.empty() ? t << "the cluster" : t << "fabric " << w.fabric; }

}  // namespace memlend::policy::detail
