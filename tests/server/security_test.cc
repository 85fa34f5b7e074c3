// Copyright 2026 The mcdrop Authors.
//
// TLS, mutual TLS and bearer tokens, with certificates made at test time by
// tests/testing/make_certs.sh (openssl): the right credentials get answers,
// every wrong one is refused, and the health service stays open.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "client/client.h"
#include "server/server.h"
#include "server/service.h"

namespace mcdrop::server {
namespace {

using ::testing::HasSubstr;

const std::string kConcrete =
    std::string(MCDROP_SOURCE_DIR) + "/models/concrete.safetensors";

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/mcdrop_certs_" +
                           std::to_string(getpid()));
    const std::string cmd = "bash " + std::string(MCDROP_SOURCE_DIR) +
                            "/tests/testing/make_certs.sh " + *dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ofstream(*dir_ + "/tokens")
        << "# tokens of the test\n  first-token-0123456789  \n\n"
        << "second-token-abcdef\n";
  }
  static void TearDownTestSuite() {
    std::system(("rm -rf " + *dir_).c_str());
    delete dir_;
  }
  static std::string File(const std::string& name) {
    return *dir_ + "/" + name;
  }

  static ServerOptions Options() {
    ServerOptions o;
    o.models = {"concrete=" + kConcrete};
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 1;
    return o;
  }
  // Options of a TLS server; with `mutual`, clients need a certificate
  // signed by the test CA.
  static ServerOptions TlsOptions(bool mutual) {
    ServerOptions o = Options();
    o.tls_cert = File("server.crt");
    o.tls_key = File("server.key");
    if (mutual) o.tls_client_ca = File("ca.crt");
    return o;
  }
  void Start(const ServerOptions& o) {
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  // A client that trusts the test CA and presents the test client
  // certificate.
  ClientOptions MutualTlsClient() const {
    ClientOptions c = Client();
    c.tls_ca = File("ca.crt");
    c.tls_cert = File("client.crt");
    c.tls_key = File("client.key");
    return c;
  }
  ClientOptions Client() const {
    ClientOptions c;
    c.target = "127.0.0.1:" + std::to_string(server_->port());
    c.timeout = absl::Seconds(5);
    return c;
  }
  // A Predict through a new channel with `co`.
  static absl::Status Predict(const ClientOptions& co) {
    auto c = mcdrop::Client::Connect(co);
    if (!c.ok()) return c.status();
    v1::PredictRequest req;
    req.add_shape(1);
    req.add_shape(8);
    for (float v : {540.f, 0.f, 0.f, 162.f, 2.5f, 1040.f, 676.f, 28.f})
      req.add_inputs(v);
    req.set_samples(10);
    return (*c)->Predict(req).status();
  }

  static std::string* dir_;
  std::unique_ptr<Server> server_;
};
std::string* SecurityTest::dir_ = nullptr;

TEST_F(SecurityTest, TlsServesTlsClientsOnly) {
  Start(TlsOptions(/*mutual=*/false));
  ClientOptions good = Client();
  good.tls_ca = File("ca.crt");
  EXPECT_TRUE(Predict(good).ok()) << Predict(good);

  // A plaintext client gets no answer.
  absl::Status plain = Predict(Client());
  EXPECT_EQ(plain.code(), absl::StatusCode::kUnavailable) << plain;
  // A client that trusts another CA refuses the server.
  ClientOptions wrong_ca = Client();
  wrong_ca.tls_ca = File("rogue-ca.crt");
  absl::Status distrust = Predict(wrong_ca);
  EXPECT_EQ(distrust.code(), absl::StatusCode::kUnavailable) << distrust;
  // And the server keeps serving.
  EXPECT_TRUE(Predict(good).ok());
}

TEST_F(SecurityTest, MutualTlsRefusesClientsWithoutASignedCertificate) {
  ServerOptions o = TlsOptions(/*mutual=*/true);
  Start(o);
  ClientOptions good = MutualTlsClient();
  EXPECT_TRUE(Predict(good).ok()) << Predict(good);

  ClientOptions no_cert = Client();
  no_cert.tls_ca = File("ca.crt");
  EXPECT_EQ(Predict(no_cert).code(), absl::StatusCode::kUnavailable);

  ClientOptions rogue = good;
  rogue.tls_cert = File("rogue-client.crt");
  rogue.tls_key = File("rogue-client.key");
  EXPECT_EQ(Predict(rogue).code(), absl::StatusCode::kUnavailable);

  // A certificate with somebody else's key.
  ClientOptions mismatched = good;
  mismatched.tls_key = File("rogue-client.key");
  EXPECT_FALSE(Predict(mismatched).ok());

  EXPECT_EQ(Predict(Client()).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Predict(good).ok());
}

TEST_F(SecurityTest, BearerTokensGuardInferenceButNotHealth) {
  ServerOptions o = Options();
  o.auth_token_file = File("tokens");
  Start(o);

  ClientOptions none = Client();
  auto c = mcdrop::Client::Connect(none);
  ASSERT_TRUE(c.ok());
  absl::Status s = Predict(none);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("authorization: Bearer"));
  EXPECT_EQ((*c)->ListModels().status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*c)->GetModelMetadata("concrete").status().code(),
            absl::StatusCode::kUnauthenticated);
  // Health stays open for probes.
  auto health = (*c)->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);

  for (const std::string bad :
       {"wrong-token", "first-token-012345678", "first-token-01234567890",
        "first-token-0123456789 ", "", "# tokens of the test"}) {
    ClientOptions co = Client();
    co.auth_token = bad.empty() ? " " : bad;
    EXPECT_EQ(Predict(co).code(), absl::StatusCode::kUnauthenticated)
        << "token \"" << bad << "\"";
  }
  for (const std::string good :
       {"first-token-0123456789", "second-token-abcdef"}) {
    ClientOptions co = Client();
    co.auth_token = good;
    EXPECT_TRUE(Predict(co).ok()) << good;
    auto with_token = mcdrop::Client::Connect(co);
    EXPECT_TRUE((*with_token)->ListModels().ok());
  }
}

TEST_F(SecurityTest, TokenOverMutualTls) {
  ServerOptions o = TlsOptions(/*mutual=*/true);
  o.auth_token_file = File("tokens");
  Start(o);
  ClientOptions co = MutualTlsClient();
  EXPECT_EQ(Predict(co).code(), absl::StatusCode::kUnauthenticated);
  co.auth_token = "second-token-abcdef";
  EXPECT_TRUE(Predict(co).ok());
}

TEST_F(SecurityTest, BadSecuritySettingsStopTheStartWithAClearError) {
  struct Case {
    std::string name;
    std::function<void(ServerOptions&)> set;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"cert without key",
       [](ServerOptions& o) { o.tls_cert = File("server.crt"); },
       absl::StatusCode::kInvalidArgument, "go together"},
      {"client CA without TLS",
       [](ServerOptions& o) { o.tls_client_ca = File("ca.crt"); },
       absl::StatusCode::kInvalidArgument, "needs --tls_cert"},
      {"missing key file",
       [](ServerOptions& o) {
         o.tls_cert = File("server.crt");
         o.tls_key = File("nope.key");
       },
       absl::StatusCode::kNotFound, "nope.key"},
      {"missing token file",
       [](ServerOptions& o) { o.auth_token_file = File("nope"); },
       absl::StatusCode::kNotFound, "token file"},
      {"token file without tokens",
       [](ServerOptions& o) {
         std::ofstream(File("empty-tokens")) << "# none\n\n";
         o.auth_token_file = File("empty-tokens");
       },
       absl::StatusCode::kInvalidArgument, "holds no token"},
  };
  for (const Case& c : cases) {
    ServerOptions o = Options();
    c.set(o);
    auto s = Server::Start(o);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.status().code(), c.code) << c.name << ": " << s.status();
    EXPECT_THAT(s.status().message(), HasSubstr(c.message)) << c.name;
  }
}

TEST_F(SecurityTest, ClientRefusesHalfAClientCertificate) {
  ClientOptions co;
  co.tls_cert = File("client.crt");
  EXPECT_EQ(mcdrop::Client::Connect(co).status().code(),
            absl::StatusCode::kInvalidArgument);
  co.tls_key = File("missing.key");
  EXPECT_EQ(mcdrop::Client::Connect(co).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secrets"));
  EXPECT_FALSE(ConstantTimeEquals("secrets", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), "a"));
}

}  // namespace
}  // namespace mcdrop::server
