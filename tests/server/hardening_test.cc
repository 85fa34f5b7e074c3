// Copyright 2026 The mcdrop Authors.
//
// Hostile input and faults over the wire: oversize messages, bytes that are
// not HTTP/2, bytes that are not protobuf, silent and half-open connections,
// calls cancelled or timed out while queued or computing. After each, the
// server must still answer a well-formed request promptly.

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "client/client.h"
#include "client/load_generator.h"
#include "server/server.h"
#include "tests/testing/metrics.h"

namespace mcdrop::server {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using v1::PredictRequest;
using v1::PredictResponse;

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

PredictRequest Rows(int rows, int T, uint64_t seed = 1) {
  PredictRequest r;
  r.add_shape(rows);
  r.add_shape(8);
  for (int i = 0; i < rows; ++i) {
    for (float v : {540.f, 0.f, 0.f, 162.f, 2.5f, 1040.f, 676.f, 28.f})
      r.add_inputs(v);
  }
  r.set_samples(T);
  r.set_seed(seed);
  return r;
}

// A TCP connection to the server that speaks whatever the test writes.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected_ =
        connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }
  void Write(const std::string& bytes) {
    (void)!send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // True if the server closes the connection within `timeout` (whatever it
  // sends before that is read and dropped).
  bool ClosedWithin(absl::Duration timeout) {
    const absl::Time until = absl::Now() + timeout;
    timeval tv{0, 50 * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    while (absl::Now() < until) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return true;  // reset
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class HardeningTest : public ::testing::Test {
 protected:
  void Start(Limits limits = {}, int threads = 2,
             absl::Duration handshake_timeout = absl::Seconds(10),
             bool metrics = false) {
    ServerOptions o;
    o.models = {"concrete=" + kConcrete};
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = threads;
    o.limits = limits;
    o.handshake_timeout = handshake_timeout;
    if (metrics) o.metrics_address = "127.0.0.1:0";
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(256 << 20);
    channel_ = grpc::CreateCustomChannel(
        target(), grpc::InsecureChannelCredentials(), args);
    stub_ = v1::Inference::NewStub(channel_);
  }
  std::string target() const {
    return "127.0.0.1:" + std::to_string(server_->port());
  }
  grpc::Status Call(const PredictRequest& req, PredictResponse* resp,
                    absl::Duration timeout = absl::Seconds(30),
                    grpc::ClientContext* ctx = nullptr) {
    grpc::ClientContext local;
    if (ctx == nullptr) ctx = &local;
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(timeout));
    return stub_->Predict(ctx, req, resp);
  }
  // A fresh, well-formed request is answered within a second.
  void ExpectServing(const std::string& after) {
    PredictResponse resp;
    const absl::Time start = absl::Now();
    grpc::Status s = Call(Rows(2, 50), &resp, absl::Seconds(5));
    EXPECT_TRUE(s.ok()) << "after " << after << ": " << s.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << "after " << after;
  }
  bool WaitUntilIdle(absl::Duration timeout) {
    const absl::Time until = absl::Now() + timeout;
    while (absl::Now() < until) {
      if (server_->engine().busy_threads() == 0 &&
          server_->engine().queued_tasks() == 0)
        return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }
  void WaitUntilBusy() {
    for (int i = 0; i < 1000 && server_->engine().busy_threads() == 0; ++i)
      absl::SleepFor(absl::Milliseconds(2));
  }

  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(HardeningTest, OversizeMessageIsRefusedBeforeItIsRead) {
  Limits limits;
  limits.max_message_bytes = 1 << 20;
  Start(limits);
  // 40000 rows x 8 floats = 1.28 MB on the wire.
  PredictResponse resp;
  grpc::Status s = Call(Rows(40000, 10), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  ExpectServing("an oversize message");
}

TEST_F(HardeningTest, ZeroSamplesMeansTheDefaultAndDeterministicIgnoresT) {
  Start();
  PredictResponse resp;
  ASSERT_TRUE(Call(Rows(2, 0), &resp).ok());
  EXPECT_EQ(resp.samples(), 100);  // concrete.safetensors: default_samples
  PredictRequest det = Rows(2, 2000000000);
  det.set_mode(v1::DETERMINISTIC);
  ASSERT_TRUE(Call(det, &resp).ok());
  EXPECT_EQ(resp.samples(), 1);
  PredictRequest mc = Rows(2, 2000000000);
  grpc::Status s = Call(mc, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectServing("T = 2e9");
}

TEST_F(HardeningTest, BytesThatAreNotHttp2CloseTheConnection) {
  Start();
  std::mt19937 rng(7);
  std::string garbage(64 << 10, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"random bytes", garbage},
      {"HTTP/1.1", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"TLS hello to a plaintext port",
       std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) +
           std::string(500, 'A')},
      {"HTTP/2 preface then garbage frames",
       "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + garbage.substr(0, 4096)},
  };
  for (const auto& [name, bytes] : inputs) {
    RawConnection c(server_->port());
    ASSERT_TRUE(c.connected());
    c.Write(bytes);
    EXPECT_TRUE(c.ClosedWithin(absl::Seconds(5))) << name;
    ExpectServing(name);
  }
}

TEST_F(HardeningTest, BytesThatAreNotProtobufGetAnErrorStatus) {
  Start();
  grpc::GenericStub generic(channel_);
  for (const std::string& payload :
       {std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10),
        std::string("\x0a\xff\xff\xff\xff\x0f", 6),
        std::string(1000, '\x08')}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    grpc::Slice slice(payload);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::CompletionQueue cq;
    auto call = generic.PrepareUnaryCall(&ctx, "/mcdrop.v1.Inference/Predict",
                                         request, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_FALSE(status.ok());

    EXPECT_THAT(status.error_code(), AnyOf(grpc::StatusCode::INTERNAL,
                                           grpc::StatusCode::INVALID_ARGUMENT))
        << status.error_message();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    ExpectServing("an undecodable request");
  }
}

TEST_F(HardeningTest, SilentAndHalfOpenConnectionsNeitherBlockNorLinger) {
  Start({}, 2, /*handshake_timeout=*/absl::Seconds(1));
  std::vector<std::unique_ptr<RawConnection>> silent, partial;
  for (int i = 0; i < 200; ++i) {
    silent.push_back(std::make_unique<RawConnection>(server_->port()));
    ASSERT_TRUE(silent.back()->connected());
  }
  for (int i = 0; i < 50; ++i) {
    partial.push_back(std::make_unique<RawConnection>(server_->port()));
    partial.back()->Write(
        "PRI * HTTP/2.0\r\n");  // half a preface, then nothing
  }
  // 250 idle sockets do not stop a real client.
  ExpectServing("250 silent connections");
  // And the server drops them once the handshake timeout passes.
  EXPECT_TRUE(silent.front()->ClosedWithin(absl::Seconds(5)));
  EXPECT_TRUE(silent.back()->ClosedWithin(absl::Seconds(5)));
  EXPECT_TRUE(partial.front()->ClosedWithin(absl::Seconds(5)));
  ExpectServing("the silent connections were dropped");
}

TEST_F(HardeningTest, CancelledCallStopsItsComputation) {
  Start();
  grpc::ClientContext ctx;
  grpc::Status status;
  const absl::Time start = absl::Now();
  std::thread call([&] {
    PredictResponse resp;
    // 512 rows x T = 100000: many seconds of work.
    status = Call(Rows(512, 100000), &resp, absl::Seconds(60), &ctx);
  });
  WaitUntilBusy();
  ctx.TryCancel();
  call.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntilIdle(absl::Seconds(1)))
      << "the engine kept working for a cancelled call";
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ExpectServing("a cancelled call");
}

TEST_F(HardeningTest, DeadlineExpiringInTheQueueAnswersPromptly) {
  Start({}, /*threads=*/1);
  grpc::ClientContext long_ctx;
  std::thread long_call([&] {
    PredictResponse resp;
    Call(Rows(512, 100000), &resp, absl::Seconds(60), &long_ctx);
  });
  WaitUntilBusy();
  // The only engine thread is taken: this call waits in the queue.
  PredictResponse resp;
  const absl::Time start = absl::Now();
  grpc::Status s = Call(Rows(4, 1000), &resp, absl::Milliseconds(300));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  long_ctx.TryCancel();
  long_call.join();
  EXPECT_TRUE(WaitUntilIdle(absl::Seconds(2)));
  ExpectServing("a deadline in the queue");
}

// The interval step runs on the pool between deadline and cancellation
// checks. Two calls asking for intervals on 64 rows x T = 100000 x 16 levels
// with deadlines shorter than their work end with DEADLINE_EXCEEDED, leave
// the engine idle at once, and a small call sent right after is answered
// promptly. (Before, intervals were computed in the completion callback
// after the last check: two such calls held both threads for about 33 s.)
TEST_F(HardeningTest, IntervalWorkStopsAtTheDeadline) {
  Start();
  PredictRequest big = Rows(64, 100000);
  for (int i = 1; i <= 16; ++i) big.add_interval_levels(i / 17.0);
  grpc::Status status[2];
  std::vector<std::thread> calls;
  for (grpc::Status& s : status) {
    calls.emplace_back([&] {
      PredictResponse resp;
      s = Call(big, &resp, absl::Milliseconds(300));
    });
  }
  for (auto& t : calls) t.join();
  for (const grpc::Status& s : status) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << s.error_message();
  }
  EXPECT_TRUE(WaitUntilIdle(absl::Milliseconds(500)))
      << "the engine kept working past the deadlines";
  ExpectServing("two interval calls past their deadline");
}

TEST_F(HardeningTest, IntervalWorkIsBoundedAtAdmission) {
  Limits limits;
  limits.max_interval_work = 100000;
  Start(limits);
  PredictRequest req = Rows(4, 10000);
  req.add_interval_levels(0.9);
  req.add_interval_levels(0.5);
  PredictResponse resp;
  grpc::Status s = Call(req, &resp);  // 80000: within the limit
  EXPECT_TRUE(s.ok()) << s.error_message();
  req.add_interval_levels(0.8);
  s = Call(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("T x rows x outputs x interval levels = 120000 "
                        "exceeds the server's limit of 100000"));
}

TEST_F(HardeningTest, ChannelDestroyedMidCallFreesTheServer) {
  Start();
  {
    // A client that goes away with calls in flight: its channel and the
    // contexts are destroyed right after TryCancel, as on process exit.
    auto channel =
        grpc::CreateChannel(target(), grpc::InsecureChannelCredentials());
    auto stub = v1::Inference::NewStub(channel);
    grpc::CompletionQueue cq;
    std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
    std::vector<PredictResponse> resps(4);
    std::vector<grpc::Status> statuses(4);
    std::vector<
        std::unique_ptr<grpc::ClientAsyncResponseReader<PredictResponse>>>
        calls;
    for (int i = 0; i < 4; ++i) {
      ctxs.push_back(std::make_unique<grpc::ClientContext>());
      calls.push_back(
          stub->AsyncPredict(ctxs.back().get(), Rows(256, 100000, i + 1), &cq));
      calls.back()->Finish(&resps[i], &statuses[i], ctxs.back().get());
    }
    WaitUntilBusy();
    for (auto& c : ctxs) c->TryCancel();
    void* tag;
    bool ok;
    for (int i = 0; i < 4; ++i) cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  EXPECT_TRUE(WaitUntilIdle(absl::Seconds(2)));
  EXPECT_EQ(server_->inflight(), 0);
  ExpectServing("a client that went away");
}

TEST_F(HardeningTest, ShutdownUnderLoadEndsEveryCallCleanly) {
  Start({}, 2, absl::Seconds(10), /*metrics=*/true);
  ClientOptions co;
  co.target = target();
  auto client = Client::Connect(co);
  ASSERT_TRUE(client.ok());
  LoadOptions lo;
  lo.concurrency = 32;
  lo.duration = absl::Seconds(3);
  lo.warmup = absl::ZeroDuration();
  lo.timeout = absl::Seconds(20);
  absl::StatusOr<LoadReport> report;
  std::thread load([&] { report = RunLoad(**client, lo, {Rows(2, 100)}); });
  absl::SleepFor(absl::Seconds(1));
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  load.join();
  ASSERT_TRUE(report.ok()) << report.status();
  // Every call the service admitted was answered OK: the client's OK count
  // is the server's, and the server cancelled none.
  const std::string text = testing::Scrape(server_->metrics_ports().at(0));
  EXPECT_EQ(report->codes["OK"],
            testing::Metric(text, "mcdrop_requests_total",
                            "code=\"OK\",model=\"concrete\""));
  EXPECT_EQ(testing::Metric(text, "mcdrop_requests_total",
                            "code=\"CANCELLED\",model=\"concrete\""),
            0);
  // The rest found the server closing: UNAVAILABLE from gRPC (connection
  // refused or GOAWAY), or CANCELLED from gRPC core for calls that reached
  // the transport during its shutdown and were never dispatched (nothing ran
  // for them; see docs/reliability.md).
  for (const auto& [code, n] : report->codes) {
    EXPECT_THAT(code, AnyOf("OK", "UNAVAILABLE", "CANCELLED")) << n;
  }
  EXPECT_GT(report->codes["OK"], 0);
  EXPECT_EQ(server_->inflight(), 0);
}

}  // namespace
}  // namespace mcdrop::server
