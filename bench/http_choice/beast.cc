// Minimal async Beast server: GET -> {"ready":true}; POST -> {"bytes":N}.
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>
namespace beast = boost::beast; namespace http = beast::http; namespace net = boost::asio;
using tcp = net::ip::tcp;
struct Session : std::enable_shared_from_this<Session> {
  beast::tcp_stream s; beast::flat_buffer buf; http::request<http::string_body> req; http::response<http::string_body> res;
  explicit Session(tcp::socket so) : s(std::move(so)) {}
  void Read() { req = {}; s.expires_after(std::chrono::seconds(30));
    http::async_read(s, buf, req, [self = shared_from_this()](beast::error_code ec, size_t) { if (ec) return; self->Handle(); }); }
  void Handle() { res = {}; res.version(req.version()); res.keep_alive(req.keep_alive()); res.result(http::status::ok);
    res.set(http::field::content_type, "application/json");
    res.body() = req.method() == http::verb::get ? "{\"ready\":true}" : "{\"bytes\":" + std::to_string(req.body().size()) + "}";
    res.prepare_payload();
    http::async_write(s, res, [self = shared_from_this()](beast::error_code ec, size_t) { if (ec) return; if (!self->res.keep_alive()) return; self->Read(); }); }
};
void Accept(tcp::acceptor& a) { a.async_accept([&a](beast::error_code ec, tcp::socket so) { if (!ec) std::make_shared<Session>(std::move(so))->Read(); Accept(a); }); }
int main(int argc, char** argv) { int threads = argc > 1 ? atoi(argv[1]) : 1; net::io_context io(threads);
  tcp::acceptor a(io, {net::ip::make_address("127.0.0.1"), 18001}); Accept(a);
  std::vector<std::thread> t; for (int i = 1; i < threads; ++i) t.emplace_back([&] { io.run(); }); io.run(); }
