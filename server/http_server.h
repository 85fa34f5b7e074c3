// Copyright 2026 The mcdrop Authors.
//
// An HTTP/1.1 listener on Boost.Beast and Asio: keep-alive connections on a
// few I/O threads, optional TLS (and mutual TLS), bounded header and body
// sizes, idle and read timeouts, a connection limit, and a graceful stop.
// It knows nothing of inference: each parsed request goes to an HttpHandler,
// which answers it once, from any thread, now or later (after the engine).
// A request that is not valid HTTP, too large or too slow gets an error
// answer or a closed connection; nothing any peer sends can crash it.

#ifndef MCDROP_SERVER_HTTP_SERVER_H_
#define MCDROP_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace mcdrop::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // the path, with any query
  // Header names in lower case, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header named `name` (lower case), if any.
  absl::optional<absl::string_view> Header(absl::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
  std::string body;
};

// One request and its one answer. Respond exactly once, from any thread; an
// exchange dropped without an answer answers 500 when destroyed.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual const HttpRequest& request() const = 0;
  // True once the server gives up on the request (its grace period after
  // Shutdown has passed, or the connection is gone): stop working on it.
  virtual bool cancelled() const = 0;
  virtual void Respond(HttpResponse response) = 0;
};

using HttpHandler = std::function<void(std::shared_ptr<HttpExchange>)>;

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0 picks a free port
  int threads = 2;  // I/O threads (parsing, JSON); the engine computes
  // TLS: PEM texts of the certificate chain and key (both or neither); with
  // `tls_client_ca`, clients must present a certificate it signed.
  std::string tls_cert, tls_key, tls_client_ca;
  size_t header_limit = 16 << 10;  // request line and headers
  size_t body_limit = 64 << 20;
  // A connection may wait this long for a request's first byte...
  absl::Duration idle_timeout = absl::Seconds(60);
  // ...and then has this long to send the rest of it (and to take the
  // answer, and for the TLS handshake).
  absl::Duration read_timeout = absl::Seconds(30);
  int max_connections = 1024;  // more are closed at once
  // Called with a request's method, target and headers (no body yet): a
  // response refuses the request before its body is read (the connection
  // then closes); nullopt lets it go on. May be empty. Thread-safe.
  std::function<absl::optional<HttpResponse>(const HttpRequest&)> screen;
};

class HttpServer {
 public:
  // Listens and starts the I/O threads. `handler` must be thread-safe.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const HttpServerOptions& options, HttpHandler handler);
  ~HttpServer();  // Shutdown(ZeroDuration())
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  bool tls() const;
  int connections() const;

  // Stops accepting and closes idle connections; a connection with a
  // request in progress gets its answer (with "Connection: close") and is
  // then closed. After `grace`, what is left is cancelled (see
  // HttpExchange::cancelled) and closed. Returns when every connection and
  // exchange is gone and the threads have stopped. Idempotent.
  void Shutdown(absl::Duration grace);

  struct Core;  // the I/O state, shared with the connections

 private:
  HttpServer() = default;
  std::shared_ptr<Core> core_;
  int port_ = 0;
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_HTTP_SERVER_H_
