// Copyright 2026 The mcdrop Authors.
//
// The load generator over a channel of its own: the service config of
// deploy/grpc-service-config.json (round robin, gRPC health checking, a
// retry policy) over two replicas, and the per-interval series and per-call
// records the fleet test (deploy/fleet.py) reads.

#include "client/load_generator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "client/client.h"
#include "core/file_util.h"
#include "server/server.h"

namespace mcdrop {
namespace {

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

std::unique_ptr<server::Server> StartReplica() {
  server::ServerOptions o;
  o.models = {"concrete=" + kConcrete};
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 1;
  auto s = server::Server::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

// Every Predict call the replica answered, whatever its code.
double Calls(server::Server& s) {
  const std::string text = s.metrics().Text();
  double sum = 0;
  for (size_t at = text.find("\nmcdrop_requests_total{");
       at != std::string::npos;
       at = text.find("\nmcdrop_requests_total{", at + 1)) {
    const size_t space = text.find("} ", at);
    sum += std::stod(text.substr(space + 2));
  }
  return sum;
}

v1::PredictRequest Row() {
  v1::PredictRequest r;
  r.add_shape(1);
  r.add_shape(8);
  for (float v : {540.f, 0.f, 0.f, 162.f, 2.5f, 1040.f, 676.f, 28.f}) {
    r.add_inputs(v);
  }
  r.set_samples(10);
  return r;
}

TEST(LoadGeneratorTest, HealthCheckedRoundRobinSkipsANotServingReplica) {
  auto a = StartReplica(), b = StartReplica();
  ASSERT_TRUE(a != nullptr && b != nullptr);
  const std::string target = "ipv4:127.0.0.1:" + std::to_string(a->port()) +
                             ",127.0.0.1:" + std::to_string(b->port());
  auto config = ReadFileToString(std::string(MCDROP_SOURCE_DIR) +
                                 "/deploy/grpc-service-config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ClientOptions co;
  co.target = target;
  co.service_config = *config;
  auto client = Client::Connect(co);
  ASSERT_TRUE(client.ok()) << client.status();

  LoadOptions o;
  o.concurrency = 4;
  o.requests = 400;
  o.warmup = absl::ZeroDuration();
  o.interval = absl::Milliseconds(20);
  o.keep_calls = true;
  auto r = RunLoad(**client, o, {Row()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->errors, 0);
  // Round robin: each replica answered about half.
  EXPECT_NEAR(Calls(*a), 200, 20);
  EXPECT_NEAR(Calls(*b), 200, 20);
  // The series and the per-call records account for every measured call.
  int64_t in_series = 0;
  for (const LoadInterval& i : r->series) in_series += i.count;
  EXPECT_EQ(in_series, 400);
  ASSERT_EQ(r->calls.size(), 400u);
  for (const LoadCall& c : r->calls) {
    EXPECT_EQ(c.code, "OK");
    EXPECT_GE(c.end, c.latency);
  }
  EXPECT_GT(r->start_unix, absl::ToUnixSeconds(absl::Now()) - 60);

  // b leaves: its health turns NOT_SERVING (and it refuses Predict). Health
  // checking takes it out of the rotation, so it gets no call at all.
  b->StartDraining();
  absl::SleepFor(absl::Milliseconds(300));
  const double a_before = Calls(*a), b_before = Calls(*b);
  r = RunLoad(**client, o, {Row()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->errors, 0);
  EXPECT_EQ(Calls(*b) - b_before, 0);
  EXPECT_EQ(Calls(*a) - a_before, 400);
}

TEST(LoadGeneratorTest, BadServiceConfigIsRefused) {
  ClientOptions co;
  co.target = "127.0.0.1:1";
  co.service_config = "{\"methodConfig\": 3}";
  auto client = Client::Connect(co);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(client.status().message()),
              ::testing::HasSubstr("invalid service config"));
}

}  // namespace
}  // namespace mcdrop
