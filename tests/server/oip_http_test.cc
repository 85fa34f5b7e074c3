// Copyright 2026 The mcdrop Authors.
//
// The HTTP side of the Open Inference Protocol: the JSON and binary codec
// (server/oip_http.h) without a socket, and the listener
// (server/http_server.h) through raw sockets, as a hostile or careless
// client would use it.

#include "server/oip_http.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/http_server.h"
#include "tests/testing/http.h"

namespace mcdrop::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int64_t kMany = 1 << 20;

TEST(ParseHttpInferRequestTest, ReadsJsonTensorsParametersAndOutputs) {
  auto r = ParseHttpInferRequest(
      R"({"id": "r1",
          "parameters": {"samples": 50, "seed": 18446744073709551615,
                         "mode": "monte_carlo", "exclude_noise": true,
                         "interval_levels": 0.9, "binary_data_output": false},
          "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32",
                      "data": [[1, 2], [3.5, -4]]}],
          "outputs": [{"name": "mean"},
                      {"name": "std", "parameters": {"binary_data": true}}]})",
      absl::nullopt, kMany);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& q = r->request;
  EXPECT_EQ(q.id(), "r1");
  ASSERT_EQ(q.inputs_size(), 1);
  EXPECT_THAT(q.inputs(0).shape(), ElementsAre(2, 2));
  EXPECT_THAT(q.inputs(0).contents().fp32_contents(),
              ElementsAre(1, 2, 3.5, -4));
  EXPECT_EQ(q.parameters().at("samples").int64_param(), 50);
  EXPECT_EQ(q.parameters().at("seed").uint64_param(), 18446744073709551615u);
  EXPECT_EQ(q.parameters().at("mode").string_param(), "monte_carlo");
  EXPECT_TRUE(q.parameters().at("exclude_noise").bool_param());
  EXPECT_DOUBLE_EQ(q.parameters().at("interval_levels").double_param(), 0.9);
  EXPECT_EQ(q.parameters().count("binary_data_output"), 0u);
  EXPECT_FALSE(r->binary_all);
  ASSERT_EQ(q.outputs_size(), 2);
  EXPECT_THAT(r->binary_outputs, ElementsAre("std"));
}

TEST(ParseHttpInferRequestTest, ReadsBinaryTensorsAfterTheJsonHeader) {
  const std::string json =
      R"({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64",
                      "parameters": {"binary_data_size": 16}}],
          "parameters": {"binary_data_output": true}})";
  const double values[2] = {1.25, -3};
  std::string body = json;
  body.append(reinterpret_cast<const char*>(values), sizeof(values));
  auto r = ParseHttpInferRequest(body, absl::StrCat(json.size()), kMany);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->binary_all);
  ASSERT_EQ(r->request.raw_input_contents_size(), 1);
  EXPECT_EQ(r->request.raw_input_contents(0),
            std::string(reinterpret_cast<const char*>(values), 16));
  EXPECT_FALSE(r->request.inputs(0).has_contents());
}

TEST(ParseHttpInferRequestTest, RefusesWhatIsWrongSayingWhat) {
  const std::string input =
      R"("inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1]}])";
  struct Case {
    std::string body;
    absl::optional<std::string> header;
    std::string message;
  } cases[] = {
      {"{", absl::nullopt, "not valid JSON"},
      {"[1]", absl::nullopt, "must be a JSON object"},
      {"{}", absl::nullopt, "needs \"inputs\""},
      {"{" + input + R"(, "input": 1})", absl::nullopt,
       "unknown field \"input\""},
      {R"({"inputs": [{"name": "input", "shape": [1], "data": [1]}]})",
       absl::nullopt, "\"datatype\""},
      {R"({"inputs": [{"name": "input", "shape": [1.5], "datatype": "FP32", "data": [1]}]})",
       absl::nullopt, "array of integers"},
      {R"({"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": ["a"]}]})",
       absl::nullopt, "must hold numbers"},
      {R"({"inputs": [{"name": "input", "shape": [1], "datatype": "FP32"}]})",
       absl::nullopt, "neither \"data\""},
      {R"({"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]})",
       std::string("*"), "only 0 binary bytes"},
      {"{" + input + "}xyz", std::string("0"), "not valid JSON"},
      {"{" + input + "}", std::string("999"), "not a byte count"},
      {"{" + input + "}", std::string("12a"), "not a byte count"},
      {"{" + input + "}\x01\x02", std::string(""), "not a byte count"},
      {"{" + input + R"(, "parameters": {"x": [1]}})", absl::nullopt,
       "boolean, number or string"},
      {"{" + input + R"(, "parameters": {"binary_data_output": 1}})",
       absl::nullopt, "binary_data_output\" must be a boolean"},
      {"{" + input +
           R"(, "outputs": [{"name": "mean", "parameters": {"classification": 3}}]})",
       absl::nullopt, "\"classification\" is not supported"},
      {"{" + input + R"(, "id": 7})", absl::nullopt, "\"id\" must be a string"},
      {std::string(40, '[') + std::string(40, ']'), absl::nullopt,
       "nested deeper"},
  };
  for (const Case& c : cases) {
    // "*": the whole body is the JSON header.
    auto r = ParseHttpInferRequest(
        c.body, c.header == "*" ? absl::StrCat(c.body.size()) : c.header,
        kMany);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message))
        << c.body;
  }
  // A binary part no input claims.
  const std::string json = "{" + input + "}";
  auto extra =
      ParseHttpInferRequest(json + "abcd", absl::StrCat(json.size()), kMany);
  EXPECT_THAT(std::string(extra.status().message()),
              HasSubstr("4 binary bytes no input claims"));
  // More numbers than the model could take stop the parse early.
  std::string big = R"({"inputs": [{"name": "input", "shape": [3000],
                        "datatype": "FP32", "data": [)";
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&big, i ? "," : "", i);
  big += "]}]}";
  auto limited = ParseHttpInferRequest(big, absl::nullopt, 1000);
  EXPECT_THAT(std::string(limited.status().message()),
              HasSubstr("more than 1000 values"));
}

TEST(HttpInferResponseTest, PutsBinaryOutputsAfterTheJson) {
  inference::ModelInferResponse resp;
  resp.set_model_name("m");
  resp.set_model_version("3");
  resp.set_id("x");
  (*resp.mutable_parameters())["samples"].set_int64_param(10);
  (*resp.mutable_parameters())["seed"].set_uint64_param(18446744073709551615u);
  const double mean[2] = {1.5, 2.5};
  const int64_t cls[2] = {4, 7};
  auto* o = resp.add_outputs();
  o->set_name("mean");
  o->set_datatype("FP64");
  o->add_shape(2);
  o->add_shape(1);
  resp.add_raw_output_contents(
      std::string(reinterpret_cast<const char*>(mean), 16));
  o = resp.add_outputs();
  o->set_name("predicted_class");
  o->set_datatype("INT64");
  o->add_shape(2);
  resp.add_raw_output_contents(
      std::string(reinterpret_cast<const char*>(cls), 16));

  HttpInferRequest req;
  HttpResponse json = HttpInferResponse(req, resp, 1 << 20);
  EXPECT_EQ(json.content_type, "application/json");
  EXPECT_THAT(json.body, HasSubstr(R"("data":[1.5,2.5])"));
  EXPECT_THAT(json.body, HasSubstr(R"("data":[4,7])"));
  EXPECT_THAT(json.body, HasSubstr(R"("seed":18446744073709551615)"));
  EXPECT_THAT(json.body, HasSubstr(R"("id":"x")"));

  req.binary_outputs = {"predicted_class"};
  HttpResponse mixed = HttpInferResponse(req, resp, 1 << 20);
  ASSERT_EQ(mixed.headers.size(), 1u);
  EXPECT_EQ(mixed.headers[0].first, "Inference-Header-Content-Length");
  const size_t n = std::stoul(mixed.headers[0].second);
  EXPECT_EQ(mixed.body.substr(n),
            std::string(reinterpret_cast<const char*>(cls), 16));
  EXPECT_THAT(mixed.body.substr(0, n), HasSubstr(R"("binary_data_size":16)"));
  EXPECT_THAT(mixed.body.substr(0, n), HasSubstr(R"("data":[1.5,2.5])"));

  // binary_data_output for all, but an output's own "binary_data": false wins.
  req.binary_outputs.clear();
  req.binary_all = true;
  req.json_outputs = {"mean"};
  HttpResponse all = HttpInferResponse(req, resp, 1 << 20);
  ASSERT_EQ(all.headers.size(), 1u);
  EXPECT_EQ(all.body.substr(std::stoul(all.headers[0].second)),
            std::string(reinterpret_cast<const char*>(cls), 16));
  EXPECT_THAT(all.body, HasSubstr(R"("data":[1.5,2.5])"));

  // JSON that could exceed the limit is refused, pointing at binary_data.
  req.json_outputs.clear();
  req.binary_all = false;
  HttpResponse big = HttpInferResponse(req, resp, 50);
  EXPECT_EQ(big.status, 400);
  EXPECT_THAT(big.body, HasSubstr("binary_data"));
}

TEST(HttpErrorTest, MapsCodesToHttpStatuses) {
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInternal), 500);
  HttpResponse r = HttpError(absl::UnauthenticatedError("no token"));
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body, R"({"error":"no token"})");
  // Messages quote request bytes, which need not be UTF-8 (found by
  // http_request_fuzz: the JSON writer threw, and an uncaught exception on
  // an I/O thread ends the server).
  HttpResponse bad = HttpError(absl::NotFoundError("model \"\xff\xfe\""));
  EXPECT_EQ(bad.status, 404);
  EXPECT_EQ(bad.body, "{\"error\":\"model \\\"\xef\xbf\xbd\xef\xbf\xbd\\\"\"}");
}

// --- The listener, through raw sockets.

using ::mcdrop::testing::Connect;
using ::mcdrop::testing::ReadAll;
using ::mcdrop::testing::ReadOne;
using ::mcdrop::testing::Send;

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(HttpServerOptions o, HttpHandler h) {
    o.host = "127.0.0.1";
    o.port = 0;
    auto s = HttpServer::Start(o, std::move(h));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  // Answers every request with its method, path and body size.
  static void Echo(std::shared_ptr<HttpExchange> e) {
    e->Respond({200,
                "text/plain",
                {},
                absl::StrCat(e->request().method, " ", e->request().target, " ",
                             e->request().body.size())});
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, KeepsAliveAndAnswersContinue) {
  Start({}, Echo);
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  Send(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(ReadOne(fd), HasSubstr("GET /a 0"));
  Send(fd,
       "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
       "Expect: 100-continue\r\n\r\n");
  std::string cont;
  char c;
  while (cont.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1)
    cont.push_back(c);
  EXPECT_THAT(cont, StartsWith("HTTP/1.1 100 Continue"));
  Send(fd, "hello");
  EXPECT_THAT(ReadOne(fd), HasSubstr("POST /b 5"));
  close(fd);
}

TEST_F(HttpServerTest, AnswersGarbageAndOversizeWithAnErrorAndCloses) {
  HttpServerOptions o;
  o.header_limit = 1024;
  o.body_limit = 100;
  Start(o, Echo);
  struct Case {
    std::string bytes, status;
  } cases[] = {
      {"GARBAGE\r\n\r\n", "HTTP/1.1 400"},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "HTTP/1.1 400"},
      {"GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n",
       "HTTP/1.1 431"},
      {"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n" + std::string(101, 'b'),
       "HTTP/1.1 413"},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 400"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       "HTTP/1.1 400"},
  };
  for (const Case& c : cases) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    Send(fd, c.bytes);
    const std::string reply = ReadAll(fd);  // returns: the server closed
    EXPECT_THAT(reply, StartsWith(c.status)) << c.bytes.substr(0, 40);
    EXPECT_THAT(reply, HasSubstr("{\"error\":")) << c.bytes.substr(0, 40);
    close(fd);
  }
  // A client that connects and goes away mid-request costs nothing.
  const int fd = Connect(server_->port());
  Send(fd, "POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc");
  close(fd);
  const int ok = Connect(server_->port());
  Send(ok, "GET /still HTTP/1.1\r\n\r\n");
  EXPECT_THAT(ReadOne(ok), HasSubstr("GET /still 0"));
  close(ok);
}

TEST_F(HttpServerTest, ClosesIdleAndSlowConnections) {
  HttpServerOptions o;
  o.idle_timeout = absl::Milliseconds(200);
  o.read_timeout = absl::Milliseconds(200);
  Start(o, Echo);
  const int idle = Connect(server_->port());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadAll(idle), "");  // closed without a word
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  close(idle);
  const int slow = Connect(server_->port());
  Send(slow, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab");
  EXPECT_EQ(ReadAll(slow), "");
  close(slow);
}

TEST_F(HttpServerTest, LimitsConnections) {
  HttpServerOptions o;
  o.max_connections = 1;
  Start(o, Echo);
  const int first = Connect(server_->port());
  Send(first, "GET /1 HTTP/1.1\r\n\r\n");
  EXPECT_THAT(ReadOne(first), HasSubstr("GET /1 0"));
  const int second = Connect(server_->port());
  EXPECT_EQ(ReadAll(second), "");  // closed at once
  close(second);
  close(first);
}

TEST_F(HttpServerTest, ShutdownAnswersWhatIsInFlightThenCloses) {
  std::thread worker;
  absl::Notification got;
  Start({}, [&](std::shared_ptr<HttpExchange> e) {
    worker = std::thread([e, &got] {
      got.Notify();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      e->Respond({200, "text/plain", {}, "late"});
    });
  });
  const int busy = Connect(server_->port());
  const int idle = Connect(server_->port());
  Send(busy, "GET /slow HTTP/1.1\r\n\r\n");
  got.WaitForNotification();
  server_->Shutdown(absl::Seconds(10));
  const std::string reply = ReadAll(busy);
  EXPECT_THAT(reply, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(reply, HasSubstr("Connection: close"));
  EXPECT_THAT(reply, HasSubstr("late"));
  EXPECT_EQ(ReadAll(idle), "");
  EXPECT_LT(Connect(server_->port()), 0);  // no longer listening
  worker.join();
  close(busy);
  close(idle);
}

TEST_F(HttpServerTest, ShutdownCancelsWhatOutlivesTheGrace) {
  std::thread worker;
  absl::Notification got;
  Start({}, [&](std::shared_ptr<HttpExchange> e) {
    worker = std::thread([e = std::move(e), &got]() mutable {
      got.Notify();
      while (!e->cancelled()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      e.reset();  // dropped unanswered: the listener answers 500 itself
    });
  });
  const int fd = Connect(server_->port());
  Send(fd, "GET /never HTTP/1.1\r\n\r\n");
  got.WaitForNotification();
  const auto t0 = std::chrono::steady_clock::now();
  server_->Shutdown(absl::Milliseconds(100));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(server_->connections(), 0);
  worker.join();
  close(fd);
}

}  // namespace
}  // namespace mcdrop::server
