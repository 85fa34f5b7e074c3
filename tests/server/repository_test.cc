// Copyright 2026 The mcdrop Authors.
//
// The model repository: versions appear, swap in under load without a failed
// request, disappear, fail to load without disturbing the version serving, can
// be pinned; hostile names and symlink escapes are refused.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "client/client.h"
#include "server/server.h"
#include "tests/testing/metrics.h"
#include "tests/testing/models.h"

namespace mcdrop::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A 3 -> 8 -> 1 regression model whose output bias marks its version.
void WriteModel(const fs::path& file, float marker) {
  ModelSpec spec =
      testing::RandomSpec({3, 8, 1}, {0.0f, 0.0f}, Task::kRegression,
                          Activation::kRelu, 5, /*standardise=*/false);
  spec.layers[1].weight.setZero();
  spec.layers[1].bias[0] = marker;
  auto m = Model::Create(spec);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->Save(file.string()).ok());
}

// A model of the given task and shape, saved to `file`.
void WriteShaped(const fs::path& file, Task task, int inputs, int outputs) {
  const ModelSpec spec = testing::RandomSpec({inputs, 8, outputs}, {0.1f, 0.2f},
                                             task, Activation::kRelu, 7);
  auto m = Model::Create(spec);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(m->Save(file.string()).ok());
}

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("repo_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }
  // Publishes a version the safe way: written under a temporary name, then
  // renamed into place.
  void Publish(const std::string& name, int version, float marker) {
    Publish(name, version, [&](const fs::path& f) { WriteModel(f, marker); });
  }
  void Publish(const std::string& name, int version,
               const std::function<void(const fs::path&)>& write) {
    const fs::path tmp = root_ / name / (std::to_string(version) + ".tmp");
    fs::create_directories(tmp);
    write(tmp / "model.safetensors");
    fs::rename(tmp, root_ / name / std::to_string(version));
  }
  void Start(std::vector<std::string> models = {}) {
    ServerOptions o;
    o.models = std::move(models);
    o.model_repository = root_.string();
    o.repository_poll = absl::Milliseconds(100);
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    ClientOptions co;
    co.target = "127.0.0.1:" + std::to_string(server_->port());
    client_ = *Client::Connect(co);
  }
  absl::StatusOr<v1::PredictResponse> Predict(const std::string& model,
                                              int64_t version = 0,
                                              int inputs = 3) {
    v1::PredictRequest r;
    r.set_model(model);
    r.set_version(version);
    r.add_shape(1);
    r.add_shape(inputs);
    for (int i = 0; i < inputs; ++i) r.add_inputs(0.5f - i);
    r.set_samples(10);
    r.set_seed(1);
    return client_->Predict(r);
  }
  // Waits up to 5 s for `done`.
  static bool Eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 500; ++i) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return done();
  }
  double Failures(const std::string& model) {
    const std::string text = server_->metrics().Text();
    const std::string key =
        "mcdrop_model_load_failures_total{model=\"" + model + "\"} ";
    const size_t at = text.find(key);
    return at == std::string::npos ? 0
                                   : std::stod(text.substr(at + key.size()));
  }

  fs::path root_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(RepositoryTest, NewVersionSwapsInUnderLoadWithoutAFailedRequest) {
  Publish("m", 1, 10.0f);
  Start();
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, calls{0}, served_v1_after_v2{0};
  std::atomic<bool> saw_v2{false};
  std::string first_error;
  std::thread load([&] {
    while (!stop) {
      auto r = Predict("m");
      ++calls;
      if (!r.ok()) {
        if (errors++ == 0) first_error = r.status().ToString();
        continue;
      }
      if (r->version() == 2) {
        saw_v2 = true;
        EXPECT_NEAR(r->rows(0).outputs(0).mean(), 20.0, 1e-4);
      } else {
        EXPECT_NEAR(r->rows(0).outputs(0).mean(), 10.0, 1e-4);
        if (saw_v2) ++served_v1_after_v2;
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(200));
  Publish("m", 2, 20.0f);
  EXPECT_TRUE(Eventually([&] { return saw_v2.load(); }));
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  load.join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_GT(calls.load(), 20);
  EXPECT_EQ(served_v1_after_v2.load(), 0);
  // Both versions are listed; the newest serves by default.
  auto meta = client_->GetModelMetadata("m");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->version(), 2);
  ASSERT_EQ(meta->versions_size(), 2);
  EXPECT_EQ(meta->versions(0).state(), v1::ModelVersionStatus::AVAILABLE);
  EXPECT_GT(meta->versions(1).load_time(), 1.7e9);
}

// Versions of one name may differ in task, outputs and inputs: each is
// served, and measured, as what it is. (Before metrics were kept per
// version, the first Predict on a classifier version that followed a
// regression version crashed the server.)
TEST_F(RepositoryTest, TaskAndShapeMayChangeBetweenVersions) {
  Publish("m", 1,
          [](const fs::path& f) { WriteShaped(f, Task::kRegression, 3, 2); });
  Start();
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, shape_refusals{0}, v1_calls{0}, answers[4] = {};
  std::atomic<int64_t> latest_version{0};
  std::string first_error;
  std::thread load([&] {
    int inputs = 3;
    while (!stop) {
      // The newest version, and version 1 pinned. Like any client, the loop
      // learns the input size from the metadata when a shape is refused.
      auto r = Predict("m", 0, inputs);
      if (r.status().code() == absl::StatusCode::kInvalidArgument) {
        ++shape_refusals;
        auto meta = client_->GetModelMetadata("m");
        if (meta.ok()) inputs = meta->input_size();
        continue;
      }
      auto pinned = Predict("m", 1);
      for (auto* p : {&r, &pinned}) {
        if (!p->ok() && errors++ == 0) first_error = p->status().ToString();
        if (p->ok() && (*p)->version() >= 1 && (*p)->version() <= 3) {
          ++answers[(*p)->version()];
        }
      }
      if (r.ok()) {
        latest_version = r->version();
        if (r->version() == 2) {
          EXPECT_EQ(r->task(), v1::CLASSIFICATION);
          EXPECT_EQ(r->rows(0).classification().probabilities_size(), 4);
        }
      }
      if (pinned.ok()) {
        ++v1_calls;
        EXPECT_EQ(pinned->task(), v1::REGRESSION);
        EXPECT_EQ(pinned->rows(0).outputs_size(), 2);
      }
    }
  });
  auto reached = [&](int64_t v) {
    return Eventually([&] { return latest_version.load() == v; });
  };
  EXPECT_TRUE(reached(1));
  Publish("m", 2, [](const fs::path& f) {
    WriteShaped(f, Task::kClassification, 3, 4);
  });
  EXPECT_TRUE(reached(2));
  absl::SleepFor(absl::Milliseconds(200));
  Publish("m", 3,
          [](const fs::path& f) { WriteShaped(f, Task::kRegression, 5, 1); });
  EXPECT_TRUE(reached(3));
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  load.join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  // The 3-input request sent once version 3 (5 inputs) serves is refused
  // with INVALID_ARGUMENT, once: then the loop sends 5.
  EXPECT_EQ(shape_refusals.load(), 1);
  EXPECT_GT(v1_calls.load(), 10);

  // Each version's uncertainty is in its own series, with its own buckets.
  const std::string text = server_->metrics().Text();
  for (const char* output : {"0", "1"}) {
    EXPECT_EQ(testing::Metric(text, "mcdrop_predictive_std_count",
                              std::string("model=\"m\",output=\"") + output +
                                  "\",version=\"1\""),
              answers[1].load());
  }
  EXPECT_EQ(testing::Metric(text, "mcdrop_predictive_entropy_nats_count",
                            "model=\"m\",version=\"2\""),
            answers[2].load());
  EXPECT_GT(testing::Metric(text, "mcdrop_predictive_entropy_nats_count",
                            "model=\"m\",version=\"2\""),
            0);
  EXPECT_GT(testing::Metric(text, "mcdrop_mutual_information_nats_count",
                            "model=\"m\",version=\"2\""),
            0);
  EXPECT_GT(testing::Metric(text, "mcdrop_predictive_std_count",
                            "model=\"m\",output=\"0\",version=\"3\""),
            0);
  EXPECT_TRUE(
      std::isnan(testing::Metric(text, "mcdrop_predictive_std_count",
                                 "model=\"m\",output=\"1\",version=\"3\"")));
}

TEST_F(RepositoryTest, PinnedVersionsAndRemoval) {
  Publish("m", 1, 10.0f);
  Publish("m", 2, 20.0f);
  Start();
  EXPECT_EQ(Predict("m")->version(), 2);
  EXPECT_EQ(Predict("m", 1)->version(), 1);
  EXPECT_NEAR(Predict("m", 1)->rows(0).outputs(0).mean(), 10.0, 1e-4);
  EXPECT_EQ(client_->GetModelMetadata("m", 1)->version(), 1);
  EXPECT_EQ(Predict("m", 3).status().code(), absl::StatusCode::kNotFound);

  fs::remove_all(root_ / "m" / "2");
  EXPECT_TRUE(Eventually([&] {
    auto r = Predict("m");
    return r.ok() && r->version() == 1;
  }));
  EXPECT_EQ(Predict("m", 2).status().code(), absl::StatusCode::kNotFound);

  fs::remove_all(root_ / "m");
  EXPECT_TRUE(Eventually([&] {
    return Predict("m").status().code() == absl::StatusCode::kNotFound;
  }));
  EXPECT_EQ(client_->ListModels()->models_size(), 0);
}

TEST_F(RepositoryTest, CorruptVersionIsRefusedAndTheOldOneKeepsServing) {
  Publish("m", 1, 10.0f);
  Start();
  fs::create_directories(root_ / "m" / "2.tmp");
  std::ofstream(root_ / "m" / "2.tmp" / "model.safetensors")
      << "this is not a model";
  fs::rename(root_ / "m" / "2.tmp", root_ / "m" / "2");
  EXPECT_TRUE(Eventually([&] { return Failures("m") == 1; }));
  auto r = Predict("m");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->version(), 1);
  auto meta = client_->GetModelMetadata("m");
  ASSERT_TRUE(meta.ok());
  ASSERT_EQ(meta->versions_size(), 2);
  EXPECT_EQ(meta->versions(1).version(), 2);
  EXPECT_EQ(meta->versions(1).state(), v1::ModelVersionStatus::FAILED);
  EXPECT_THAT(meta->versions(1).reason(), HasSubstr("header length"));
  auto pinned = Predict("m", 2);
  EXPECT_EQ(pinned.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(pinned.status().message(), HasSubstr("FAILED"));
  // Not retried while the file is unchanged...
  absl::SleepFor(absl::Milliseconds(350));
  EXPECT_EQ(Failures("m"), 1);
  // ... and a fixed file loads.
  fs::create_directories(root_ / "m" / "2.fix");
  WriteModel(root_ / "m" / "2.fix" / "model.safetensors", 20.0f);
  fs::rename(root_ / "m" / "2.fix" / "model.safetensors",
             root_ / "m" / "2" / "model.safetensors");
  EXPECT_TRUE(Eventually([&] {
    auto p = Predict("m");
    return p.ok() && p->version() == 2;
  }));
}

TEST_F(RepositoryTest, HostileNamesAndSymlinkEscapesAreRefused) {
  Publish("m", 1, 10.0f);
  const fs::path outside =
      fs::path(::testing::TempDir()) / ("outside_" + std::to_string(getpid()));
  fs::create_directories(outside / "1");
  WriteModel(outside / "1" / "model.safetensors", 99.0f);
  for (const char* bad : {"bad name", "sp$cial"}) {
    fs::create_directories(root_ / bad / "1");
    WriteModel(root_ / bad / "1" / "model.safetensors", 1.0f);
  }
  for (const char* v : {"0", "-1", "abc", "007", "1e3"}) {
    fs::create_directories(root_ / "m" / v);
    WriteModel(root_ / "m" / v / "model.safetensors", 5.0f);
  }
  fs::create_directories(root_ / "escape" / "1");
  fs::create_symlink(outside / "1" / "model.safetensors",
                     root_ / "escape" / "1" / "model.safetensors");
  fs::create_directory_symlink(outside, root_ / "linkdir");
  Start();
  auto list = client_->ListModels();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->models_size(), 1);
  EXPECT_EQ(list->models(0).name(), "m");
  EXPECT_EQ(list->models(0).versions_size(), 1);
  for (const char* name :
       {"escape", "linkdir", "bad name", "../m", "m/1", ""}) {
    auto r = Predict(name);
    if (std::string(name).empty()) {
      EXPECT_TRUE(r.ok());  // the default model, m
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << name;
    }
  }
  fs::remove_all(outside);
}

TEST_F(RepositoryTest, SingleFileModelsStillWork) {
  Publish("m", 1, 10.0f);
  const fs::path file = root_.parent_path() /
                        ("single_" + std::to_string(getpid()) + ".safetensors");
  WriteModel(file, 42.0f);
  Start({"solo=" + file.string()});
  EXPECT_NEAR(Predict("solo")->rows(0).outputs(0).mean(), 42.0, 1e-4);
  EXPECT_EQ(Predict("")->model(), "solo");  // the first --model is the default
  EXPECT_EQ(Predict("m")->version(), 1);
  fs::remove(file);
}

}  // namespace
}  // namespace mcdrop::server
