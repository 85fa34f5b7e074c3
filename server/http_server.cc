// Copyright 2026 The mcdrop Authors.
//
// Structure after Boost.Beast's advanced server examples: one strand per
// connection, async_read_header / async_read with a request_parser that
// carries the limits, tcp_stream timeouts, and a session kept alive by the
// handlers it has pending (and by its exchange while the engine computes).

#include "server/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <list>
#include <optional>
#include <thread>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace mcdrop::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

std::chrono::steady_clock::duration ToSteady(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// A request's method, target and headers (names in lower case).
HttpRequest HeadersOf(const http::request<http::string_body>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  for (const auto& field : req) {
    r.headers.emplace_back(
        absl::AsciiStrToLower(absl::string_view(field.name_string().data(),
                                                field.name_string().size())),
        std::string(field.value()));
  }
  return r;
}

std::string ErrorJson(absl::string_view message) {
  // The message is ours (ASCII, no quotes or backslashes).
  return absl::StrCat("{\"error\":\"", message, "\"}");
}

}  // namespace

// What Shutdown needs to reach a live connection.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void Stop() = 0;  // close if idle; else after the answer
  virtual void Kill() = 0;  // close now
};

struct HttpServer::Core {
  std::weak_ptr<Core> self_;  // for the sessions to hold
  HttpServerOptions options;
  HttpHandler handler;
  net::io_context io;
  std::optional<ssl::context> tls;
  tcp::acceptor acceptor{net::make_strand(io)};
  net::steady_timer accept_retry{acceptor.get_executor()};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};   // no new requests
  std::atomic<bool> cancelled{false};  // the grace period is over
  bool shut_down = false;              // Shutdown ran (its caller's thread)

  absl::Mutex mu;
  std::list<std::weak_ptr<SessionBase>> sessions ABSL_GUARDED_BY(mu);
  int live ABSL_GUARDED_BY(mu) = 0;

  std::list<std::weak_ptr<SessionBase>>::iterator Register(
      std::weak_ptr<SessionBase> s) {
    absl::MutexLock lock(&mu);
    ++live;
    return sessions.insert(sessions.end(), std::move(s));
  }
  void Unregister(std::list<std::weak_ptr<SessionBase>>::iterator it) {
    absl::MutexLock lock(&mu);
    sessions.erase(it);
    --live;
  }
  std::vector<std::shared_ptr<SessionBase>> Live() {
    absl::MutexLock lock(&mu);
    std::vector<std::shared_ptr<SessionBase>> out;
    for (auto& w : sessions) {
      if (auto s = w.lock()) out.push_back(std::move(s));
    }
    return out;
  }
  // Waits until no connection is left or `deadline`; true when none is.
  bool AwaitNone(absl::Time deadline) {
    absl::MutexLock lock(&mu);
    auto none = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return live == 0; };
    return mu.AwaitWithDeadline(absl::Condition(&none), deadline);
  }
  void Accept();
};

namespace {

// The exchange of one request: answering posts the answer to the
// connection's strand.
class Exchange final : public HttpExchange {
 public:
  Exchange(HttpRequest request, std::function<void(HttpResponse)> write,
           std::shared_ptr<std::atomic<bool>> closed,
           const std::atomic<bool>* cancelled)
      : request_(std::move(request)),
        write_(std::move(write)),
        closed_(std::move(closed)),
        cancelled_(cancelled) {}
  ~Exchange() override {
    if (!answered_.exchange(true)) {
      write_(HttpResponse{500,
                          "application/json",
                          {},
                          ErrorJson("internal: the request got no answer")});
    }
  }
  const HttpRequest& request() const override { return request_; }
  bool cancelled() const override {
    return cancelled_->load(std::memory_order_relaxed) ||
           closed_->load(std::memory_order_relaxed);
  }
  void Respond(HttpResponse response) override {
    if (answered_.exchange(true)) return;
    write_(std::move(response));
  }

 private:
  HttpRequest request_;
  std::function<void(HttpResponse)> write_;
  std::shared_ptr<std::atomic<bool>> closed_;
  const std::atomic<bool>* cancelled_;  // the server's, outlives this
  std::atomic<bool> answered_{false};
};

template <class Stream>
class Session final : public SessionBase,
                      public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  Session(std::shared_ptr<HttpServer::Core> core, tcp::socket socket)
      : core_(std::move(core)), stream_(MakeStream(std::move(socket))) {}
  ~Session() override {
    closed_->store(true);
    if (registered_) core_->Unregister(it_);
  }

  void Start() {
    it_ = core_->Register(this->weak_from_this());
    registered_ = true;
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->Lowest().expires_after(
            ToSteady(self->core_->options.read_timeout));
        self->stream_.async_handshake(ssl::stream_base::server,
                                      [self](beast::error_code ec) {
                                        if (ec) return self->Close();
                                        self->handshaken_ = true;
                                        self->ReadHeader();
                                      });
      } else {
        self->ReadHeader();
      }
    });
  }

  void Stop() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (!self->busy_) self->Close();
    });
  }
  void Kill() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      self->closed_->store(true);
      self->Lowest().close();
    });
  }

 private:
  Stream MakeStream(tcp::socket socket) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *core_->tls);
    } else {
      return Stream(std::move(socket));
    }
  }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void ReadHeader() {
    if (core_->stopping.load()) return Close();
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(core_->options.header_limit));
    parser_->body_limit(core_->options.body_limit);
    Lowest().expires_after(ToSteady(core_->options.idle_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) {
          self->OnHeader(ec);
        });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return Fail(ec);
    // From here the request is in progress: Stop() lets it finish.
    busy_ = true;
    Lowest().expires_after(ToSteady(core_->options.read_timeout));
    const auto& req = parser_->get();
    if (core_->options.screen) {
      if (auto refusal = core_->options.screen(HeadersOf(req))) {
        keep_alive_ = false;  // the body stays unread
        version_ = req.version();
        responding_ = true;
        return Write(*std::move(refusal));
      }
    }
    if (absl::EqualsIgnoreCase(
            absl::string_view(req[http::field::expect].data(),
                              req[http::field::expect].size()),
            "100-continue") &&
        !parser_->is_done()) {
      // curl sends larger bodies only after this (or a second's wait).
      auto cont = std::make_shared<http::response<http::empty_body>>(
          http::status::continue_, req.version());
      http::async_write(stream_, *cont,
                        [self = this->shared_from_this(), cont](
                            beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->Fail(ec);
          self->Dispatch();
        });
  }

  void Dispatch() {
    http::request<http::string_body> req = parser_->release();
    parser_.reset();
    responding_ = true;
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    HttpRequest r = HeadersOf(req);
    r.body = std::move(req.body());
    auto self = this->shared_from_this();
    auto exchange = std::make_shared<Exchange>(
        std::move(r),
        [self](HttpResponse response) {
          net::post(self->stream_.get_executor(),
                    [self, response = std::move(response)]() mutable {
                      self->Write(std::move(response));
                    });
        },
        closed_, &core_->cancelled);
    // An exception escaping here would end the I/O thread and the server.
    try {
      core_->handler(exchange);
    } catch (const std::exception& e) {
      spdlog::error("HTTP handler: {}", e.what());
      exchange->Respond(HttpResponse{
          500,
          "application/json",
          {},
          ErrorJson("internal: the request could not be handled")});
    }
  }

  void Write(HttpResponse r) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version_);
    res->set(http::field::server, "mcdrop");
    res->set(http::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) res->set(name, value);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive_ && !core_->stopping.load());
    res->prepare_payload();
    Lowest().expires_after(ToSteady(core_->options.read_timeout));
    http::async_write(
        stream_, *res,
        [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
          self->busy_ = self->responding_ = false;
          if (ec || !res->keep_alive()) return self->Close();
          self->ReadHeader();
        });
  }

  // A request that is not valid HTTP, or too large, gets an answer saying
  // so and the connection closes; a silent, slow or vanished peer is closed.
  void Fail(beast::error_code ec) {
    int status = 0;
    std::string why;
    if (ec == http::error::body_limit) {
      status = 413;
      why = absl::StrCat("the request body exceeds ", core_->options.body_limit,
                         " bytes");
    } else if (ec == http::error::header_limit) {
      status = 431;
      why = absl::StrCat("the request headers exceed ",
                         core_->options.header_limit, " bytes");
    } else if (ec.category() ==
                   http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream &&
               ec != http::error::partial_message) {
      status = 400;
      why = absl::StrCat("malformed HTTP request: ", ec.message());
    }
    if (status == 0 || responding_) return Close();
    keep_alive_ = false;
    busy_ = responding_ = true;
    Write(HttpResponse{status, "application/json", {}, ErrorJson(why)});
  }

  void Close() {
    closed_->store(true);
    if constexpr (kTls) {
      if (handshaken_ && Lowest().socket().is_open()) {
        handshaken_ = false;
        Lowest().expires_after(std::chrono::seconds(2));
        stream_.async_shutdown(
            [self = this->shared_from_this()](beast::error_code) {
              self->Lowest().close();
            });
        return;
      }
    }
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    Lowest().close();
  }

  std::shared_ptr<HttpServer::Core> core_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<std::atomic<bool>> closed_ =
      std::make_shared<std::atomic<bool>>(false);
  std::list<std::weak_ptr<SessionBase>>::iterator it_;
  bool registered_ = false;
  bool busy_ = false;        // a request is being read or answered
  bool responding_ = false;  // its answer is awaited or being written
  bool keep_alive_ = true;
  bool handshaken_ = false;
  unsigned version_ = 11;
};

}  // namespace

void HttpServer::Core::Accept() {
  acceptor.async_accept(
      net::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        if (ec) {
          // Out of descriptors or buffers: try again later, not at once
          // (which would spin an I/O thread).
          spdlog::warn("HTTP accept: {}; retrying in 100 ms", ec.message());
          accept_retry.expires_after(std::chrono::milliseconds(100));
          accept_retry.async_wait([this](beast::error_code wait) {
            if (!wait && acceptor.is_open()) Accept();
          });
          return;
        }
        {
          bool full;
          {
            absl::MutexLock lock(&mu);
            full = live >= options.max_connections;
          }
          if (full || stopping.load()) {
            beast::error_code ignored;
            socket.close(ignored);
          } else {
            // The session holds the core; the core only weakly the session.
            std::shared_ptr<Core> self = self_.lock();
            if (tls) {
              std::make_shared<Session<TlsStream>>(self, std::move(socket))
                  ->Start();
            } else {
              std::make_shared<Session<PlainStream>>(self, std::move(socket))
                  ->Start();
            }
          }
        }
        Accept();
      });
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, HttpHandler handler) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  auto core = std::make_shared<Core>();
  core->self_ = core;
  core->options = options;
  core->handler = std::move(handler);
  try {
    if (!options.tls_cert.empty()) {
      core->tls.emplace(ssl::context::tls_server);
      core->tls->set_options(ssl::context::default_workarounds |
                             ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                             ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      core->tls->use_certificate_chain(
          net::buffer(options.tls_cert.data(), options.tls_cert.size()));
      core->tls->use_private_key(
          net::buffer(options.tls_key.data(), options.tls_key.size()),
          ssl::context::pem);
      if (!options.tls_client_ca.empty()) {
        core->tls->add_certificate_authority(net::buffer(
            options.tls_client_ca.data(), options.tls_client_ca.size()));
        core->tls->set_verify_mode(ssl::verify_peer |
                                   ssl::verify_fail_if_no_peer_cert);
        // Without a session id context OpenSSL fails the handshake of a
        // client that resumes a session when peers are verified.
        static const unsigned char kContext[] = "mcdrop";
        SSL_CTX_set_session_id_context(core->tls->native_handle(), kContext,
                                       sizeof(kContext) - 1);
      }
    }
    const tcp::endpoint endpoint(net::ip::make_address(options.host),
                                 static_cast<unsigned short>(options.port));
    core->acceptor.open(endpoint.protocol());
    core->acceptor.set_option(net::socket_base::reuse_address(true));
    core->acceptor.bind(endpoint);
    core->acceptor.listen(net::socket_base::max_listen_connections);
    s->port_ = core->acceptor.local_endpoint().port();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot listen for HTTP on ",
                                               options.host, ":", options.port,
                                               ": ", e.what()));
  }
  core->work.emplace(net::make_work_guard(core->io));
  core->Accept();
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    core->threads.emplace_back([c = core.get()] { c->io.run(); });
  }
  s->core_ = std::move(core);
  return s;
}

bool HttpServer::tls() const { return core_->tls.has_value(); }

int HttpServer::connections() const {
  absl::MutexLock lock(&core_->mu);
  return core_->live;
}

void HttpServer::Shutdown(absl::Duration grace) {
  if (core_ == nullptr || core_->shut_down) return;
  core_->shut_down = true;
  core_->stopping.store(true);
  net::post(core_->acceptor.get_executor(), [c = core_.get()] {
    beast::error_code ignored;
    c->acceptor.close(ignored);
    c->accept_retry.cancel();
  });
  for (auto& s : core_->Live()) s->Stop();
  if (!core_->AwaitNone(absl::Now() + grace)) {
    core_->cancelled.store(true);
    for (auto& s : core_->Live()) s->Kill();
    // Exchanges still computing hold their connection until the engine
    // sees the cancellation and answers.
    core_->AwaitNone(absl::InfiniteFuture());
  }
  core_->work.reset();
  core_->io.stop();
  for (std::thread& t : core_->threads) t.join();
  core_->threads.clear();
}

HttpServer::~HttpServer() {
  Shutdown(absl::ZeroDuration());
  if (core_ != nullptr) core_->self_.reset();
}

absl::optional<absl::string_view> HttpRequest::Header(
    absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return absl::string_view(v);
  }
  return absl::nullopt;
}

}  // namespace mcdrop::server
