// Copyright 2026 The mcdrop Authors.
//
// One request over several servers: the merged answer against one server's,
// bit for bit, for regression and classification, with uneven ranges, a
// replica that is down or dies mid-request, and the server's refusals.

#include "client/sharded.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/server.h"

namespace mcdrop {
namespace {

using ::testing::HasSubstr;

const std::string kModels = std::string(MCDROP_SOURCE_DIR) + "/models/";

ShardOptions Ranges(int n) {
  ShardOptions o;
  o.ranges = n;
  return o;
}

ShardOptions Ends(std::vector<int64_t> ends) {
  ShardOptions o;
  o.ends = std::move(ends);
  return o;
}

ShardOptions Attempts(int n) {
  ShardOptions o;
  o.max_attempts = n;
  return o;
}

class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      server::ServerOptions o;
      o.models = {"concrete=" + kModels + "concrete.safetensors",
                  "digits=" + kModels + "digits.safetensors"};
      o.host = "127.0.0.1";
      o.port = 0;
      o.threads = 1;
      o.limits.max_samples = 1000000;
      auto s = server::Server::Start(o);
      ASSERT_TRUE(s.ok()) << s.status();
      targets_.push_back("127.0.0.1:" + std::to_string((*s)->port()));
      servers_.push_back(*std::move(s));
    }
  }

  std::unique_ptr<ShardedClient> Fleet(std::vector<std::string> targets) {
    auto f = ShardedClient::Connect(targets, {});
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *std::move(f) : nullptr;
  }

  // One server's answer to `req`.
  v1::PredictResponse Single(const v1::PredictRequest& req) {
    ClientOptions o;
    o.target = targets_[0];
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok());
    auto r = (*c)->Predict(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::PredictResponse();
  }

  static v1::PredictRequest Concrete(int T) {
    v1::PredictRequest r;
    r.set_model("concrete");
    r.add_shape(2);
    r.add_shape(8);
    for (float v : {540.f, 0.f, 0.f, 162.f, 2.5f, 1040.f, 676.f, 28.f, 332.5f,
                    142.5f, 0.f, 228.f, 0.f, 932.f, 594.f, 270.f}) {
      r.add_inputs(v);
    }
    r.set_samples(T);
    r.set_seed(11);
    return r;
  }

  static v1::PredictRequest Digits(int T) {
    v1::PredictRequest r;
    r.set_model("digits");
    r.add_shape(2);
    r.add_shape(64);
    for (int i = 0; i < 128; ++i) r.add_inputs(static_cast<float>(i % 17));
    r.set_samples(T);
    r.set_seed(5);
    return r;
  }

  std::vector<std::unique_ptr<server::Server>> servers_;
  std::vector<std::string> targets_;
};

// The same bits: the figures are doubles compared by their representation,
// through the serialised messages (queue and compute times aside).
void ExpectSameAnswer(v1::PredictResponse got, v1::PredictResponse want) {
  for (auto* r : {&got, &want}) {
    r->clear_queue_seconds();
    r->clear_compute_seconds();
    r->clear_prediction_id();
    for (auto& row : *r->mutable_rows()) row.clear_id();
  }
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString())
      << "sharded:\n"
      << got.DebugString() << "\none server:\n"
      << want.DebugString();
}

TEST_F(ShardedTest, RegressionRangesMergeToOneServersBits) {
  auto fleet = Fleet(targets_);
  const v1::PredictRequest req = Concrete(5000);
  const v1::PredictResponse single = Single(req);
  for (const ShardOptions& o : {ShardOptions(), Ranges(7),
                                Ends({256, 3840, 5000}), Ends({4864, 5000})}) {
    std::vector<RangeReport> report;
    auto merged = fleet->Predict(req, o, &report);
    ASSERT_TRUE(merged.ok()) << merged.status();
    ExpectSameAnswer(*merged, single);
    for (const RangeReport& r : report) EXPECT_EQ(r.attempts, 1);
  }
}

TEST_F(ShardedTest, ClassificationRangesMergeToOneServersBits) {
  auto fleet = Fleet(targets_);
  v1::PredictRequest req = Digits(3000);
  req.set_return_samples(true);
  auto merged = fleet->Predict(req, Ends({512, 1024, 3000}));
  ASSERT_TRUE(merged.ok()) << merged.status();
  ExpectSameAnswer(*merged, Single(req));
}

TEST_F(ShardedTest, AReplicaThatIsDownIsSkipped) {
  // A port nothing listens on: its ranges go to the next replica.
  auto fleet = Fleet({targets_[0], "127.0.0.1:1", targets_[2]});
  const v1::PredictRequest req = Concrete(3000);
  std::vector<RangeReport> report;
  auto merged = fleet->Predict(req, Ranges(3), &report);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ExpectSameAnswer(*merged, Single(req));
  ASSERT_EQ(report.size(), 3u);
  EXPECT_EQ(report[1].attempts, 2);
  EXPECT_EQ(report[1].replica, 2);
  EXPECT_THAT(report[1].errors, HasSubstr("UNAVAILABLE"));
}

TEST_F(ShardedTest, AReplicaThatDiesMidRequestIsRetriedElsewhere) {
  // Replica 1 stops (grace 0: its calls are cut) while computing its range.
  auto fleet = Fleet(targets_);
  const v1::PredictRequest req = Digits(300000);
  std::thread killer([this] {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (servers_[1]->inflight() == 0 && absl::Now() < give_up) {
      absl::SleepFor(absl::Microseconds(200));
    }
    servers_[1]->Shutdown(absl::ZeroDuration());
  });
  std::vector<RangeReport> report;
  auto merged = fleet->Predict(req, Ranges(3), &report);
  killer.join();
  ASSERT_TRUE(merged.ok()) << merged.status();
  ExpectSameAnswer(*merged, Single(req));
  EXPECT_EQ(report[1].attempts, 2)
      << report[1].errors << " after " << report[1].seconds << " s";
  EXPECT_EQ(report[1].replica, 2);
}

// A rolling update half done: replica B holds version 2, replica A only 1.
// The range B answered with version 2 is asked again, pinned to range 0's
// version, and the answer is version 1's.
TEST(ShardedVersionTest, RangesOfAnotherVersionAreAskedAgain) {
  const std::string root = ::testing::TempDir() + "/sharded_versions";
  std::filesystem::remove_all(root);
  for (const char* dir : {"/a/concrete/1", "/b/concrete/1", "/b/concrete/2"}) {
    std::filesystem::create_directories(root + dir);
    std::filesystem::copy_file(kModels + "concrete.safetensors",
                               root + dir + "/model.safetensors");
  }
  std::vector<std::unique_ptr<server::Server>> servers;
  std::vector<std::string> targets;
  for (const char* replica : {"/a", "/b"}) {
    server::ServerOptions o;
    o.model_repository = root + replica;
    o.repository_poll = absl::ZeroDuration();
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 1;
    auto s = server::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    targets.push_back("127.0.0.1:" + std::to_string((*s)->port()));
    servers.push_back(*std::move(s));
  }
  auto fleet = ShardedClient::Connect(targets, {});
  ASSERT_TRUE(fleet.ok());
  v1::PredictRequest req;
  req.set_model("concrete");
  req.add_shape(8);
  for (float v : {540.f, 0.f, 0.f, 162.f, 2.5f, 1040.f, 676.f, 28.f}) {
    req.add_inputs(v);
  }
  req.set_samples(2000);
  req.set_seed(3);
  std::vector<RangeReport> report;
  auto merged = (*fleet)->Predict(req, {}, &report);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->version(), 1);
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[1].attempts, 2);  // version 2 on B, then 1 on A
  EXPECT_EQ(report[1].replica, 0);
  v1::PredictRequest v1_req = req;
  v1_req.set_version(1);
  ClientOptions o;
  o.target = targets[0];
  auto single = Client::Connect(o);
  ASSERT_TRUE(single.ok());
  auto want = (*single)->Predict(v1_req);
  ASSERT_TRUE(want.ok()) << want.status();
  ExpectSameAnswer(*merged, *want);
}

TEST_F(ShardedTest, NoReplicaLeftIsAClearError) {
  auto fleet = Fleet({"127.0.0.1:1", "127.0.0.1:2"});
  auto merged = fleet->Predict(Concrete(1000), Attempts(2));
  ASSERT_FALSE(merged.ok());
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(merged.status().message(), HasSubstr("2 call(s) failed"));
}

TEST_F(ShardedTest, ClientRefusesWhatCannotBeSharded) {
  auto fleet = Fleet(targets_);
  v1::PredictRequest req = Concrete(1000);
  req.add_interval_levels(0.9);
  EXPECT_THAT(std::string(fleet->Predict(req).status().message()),
              HasSubstr("every pass in one place"));
  req = Concrete(1000);
  EXPECT_THAT(
      std::string(fleet->Predict(req, Ends({300, 1000})).status().message()),
      HasSubstr("multiples of 256"));
}

TEST_F(ShardedTest, ServerRefusesRangesThatDoNotFit) {
  ClientOptions o;
  o.target = targets_[0];
  auto c = Client::Connect(o);
  ASSERT_TRUE(c.ok());
  auto call = [&](const v1::PredictRequest& r) {
    grpc::ClientContext ctx;
    v1::PredictResponse resp;
    return FromGrpcStatus((*c)->stub().Predict(&ctx, r, &resp));
  };
  auto range = [](v1::PredictRequest r, int64_t a, int64_t b) {
    r.mutable_sample_range()->set_begin(a);
    r.mutable_sample_range()->set_end(b);
    return r;
  };
  struct Case {
    v1::PredictRequest request;
    std::string says;
  };
  v1::PredictRequest no_seed = Concrete(1000);
  no_seed.set_seed(0);
  v1::PredictRequest huge = Concrete(2000000);
  std::vector<Case> cases = {
      {range(Concrete(1000), 0, 1001), "not a non-empty range"},
      {range(Concrete(1000), 512, 256), "not a non-empty range"},
      {range(Concrete(1000), -256, 256), "not a non-empty range"},
      {range(Concrete(1000), 100, 512), "multiples of 256"},
      {range(Concrete(1000), 0, 300), "multiples of 256"},
      {range(no_seed, 0, 256), "seed"},
      {range(huge, 0, 1000192), "over the server's limit"},
  };
  v1::PredictRequest levels = Concrete(1000);
  levels.add_interval_levels(0.9);
  cases.push_back({range(levels, 0, 256), "interval_levels"});
  v1::PredictRequest deterministic = Concrete(1000);
  deterministic.set_mode(v1::DETERMINISTIC);
  cases.push_back({range(deterministic, 0, 256), "MONTE_CARLO"});
  for (const Case& k : cases) {
    const absl::Status s = call(k.request);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
        << k.request.ShortDebugString();
    EXPECT_THAT(std::string(s.message()), HasSubstr(k.says));
  }
  // T itself may exceed --max_samples: a range within it is run.
  EXPECT_TRUE(call(range(huge, 1999872, 2000000)).ok());
}

// Whatever a replica answers, the merge returns an answer or an error: it
// never crashes or reads out of bounds (run under ASan in CI).
TEST_F(ShardedTest, MergeSurvivesCorruptedStatistics) {
  for (const v1::PredictRequest& whole : {Concrete(2000), Digits(2000)}) {
    std::vector<v1::PredictResponse> good;
    ClientOptions o;
    o.target = targets_[0];
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok());
    for (auto [a, b] : {std::pair<int64_t, int64_t>{0, 768}, {768, 2000}}) {
      v1::PredictRequest r = whole;
      r.mutable_sample_range()->set_begin(a);
      r.mutable_sample_range()->set_end(b);
      grpc::ClientContext ctx;
      v1::PredictResponse resp;
      ASSERT_TRUE((*c)->stub().Predict(&ctx, r, &resp).ok());
      good.push_back(resp);
    }
    ASSERT_TRUE(MergeRanges(whole, good).ok());
    std::mt19937_64 rng(17);
    auto any = [&](int64_t lo, int64_t hi) {
      return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
    };
    auto wild = [&] {
      const int64_t picks[] = {-1,
                               0,
                               1,
                               2,
                               255,
                               256,
                               767,
                               768,
                               2000,
                               1 << 30,
                               std::numeric_limits<int64_t>::max(),
                               std::numeric_limits<int64_t>::min()};
      return picks[any(0, 11)];
    };
    int refused = 0;
    for (int it = 0; it < 3000; ++it) {
      std::vector<v1::PredictResponse> bad = good;
      for (int m = any(1, 3); m > 0; --m) {
        v1::PassStatistics* p = bad[any(0, 1)].mutable_pass_statistics();
        v1::PassBlock* b = p->blocks_size()
                               ? p->mutable_blocks(any(0, p->blocks_size() - 1))
                               : p->add_blocks();
        switch (any(0, 13)) {
          case 0:
            b->set_level(static_cast<int32_t>(wild()));
            break;
          case 1:
            b->set_index(wild());
            break;
          case 2:
            b->set_passes(wild());
            break;
          case 3:
            b->add_mean(std::nan(""));
            break;
          case 4:
            b->clear_m2();
            break;
          case 5:
            b->mutable_sum_p()->Clear();
            break;
          case 6:
            b->add_sum_entropy(1e308);
            break;
          case 7:
            p->set_rows(static_cast<int32_t>(wild()));
            break;
          case 8:
            p->set_outputs(static_cast<int32_t>(wild()));
            break;
          case 9:
            p->set_begin(wild());
            break;
          case 10:
            p->set_end(wild());
            break;
          case 11:
            p->add_votes(wild());
            break;
          case 12:
            *p->add_blocks() = *b;
            break;
          case 13:
            p->mutable_blocks()->RemoveLast();
            break;
        }
      }
      auto merged = MergeRanges(whole, bad);
      if (!merged.ok()) {
        ++refused;
        continue;
      }
      EXPECT_EQ(merged->rows_size(), 2);
    }
    EXPECT_GT(refused, 2500);
  }
}

TEST(SplitPassesTest, EqualRangesOnLeafBoundaries) {
  EXPECT_EQ(SplitPasses(1000000, 4),
            std::vector<int64_t>({249856, 499968, 750080, 1000000}));
  for (int n : {1, 2, 3, 4, 7}) {
    const std::vector<int64_t> e = SplitPasses(1000000, n);
    ASSERT_EQ(e.size(), static_cast<size_t>(n));
    EXPECT_EQ(e.back(), 1000000);
    for (size_t i = 0; i + 1 < e.size(); ++i) {
      EXPECT_EQ(e[i] % 256, 0);
      const int64_t size = e[i] - (i ? e[i - 1] : 0);
      EXPECT_NEAR(size, 1000000.0 / n, 256);
    }
  }
  EXPECT_EQ(SplitPasses(300, 4), std::vector<int64_t>({256, 300}));
  EXPECT_EQ(SplitPasses(100, 3), std::vector<int64_t>({100}));
}

}  // namespace
}  // namespace mcdrop
