// A fix for caf-openssl 0.17.6, interposed here because Debian ships that
// library as it is.
//
// OpenSSL keeps a per-thread error queue, and SSL_get_error() reports
// SSL_ERROR_SSL whenever that queue is not empty, whatever the call it is
// asked about did. caf-openssl calls SSL_read/SSL_write/SSL_accept/SSL_connect
// for every connection from one multiplexer thread and never clears the
// queue first (it only drains it when CAF's logging is compiled in, which
// Debian's build is not). So one peer that fails its TLS handshake, say a
// stranger with a certificate from another CA, leaves errors behind and the
// next read on any other connection counts as failed: every agent of the
// cluster was disconnected each time a stranger knocked.
//
// The binary exports these four symbols, so the dynamic linker binds
// caf-openssl's calls to them; each clears the queue and calls OpenSSL's own
// function, found with RTLD_NEXT.
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdlib>

namespace {

template <class F>
F next(const char* name) {
  auto f = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
  if (!f) std::abort();  // libssl without SSL_read cannot happen; do not limp on
  return f;
}

}  // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto real = next<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto real = next<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static auto real = next<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

int SSL_connect(SSL* ssl) {
  static auto real = next<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

}  // extern "C"
