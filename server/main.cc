// Copyright 2026 The mcdrop Authors.
//
// mcdrop-server: serves Monte-Carlo-dropout models over gRPC.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/dense_kernel.h"
#include "server/memory.h"
#include "server/server.h"

ABSL_FLAG(std::vector<std::string>, model, {},
          "NAME=PATH of a model file, or a bare PATH (named after the file); "
          "repeat the flag or "
          "separate with commas. The first is the default model.");
ABSL_FLAG(std::string, model_repository, "",
          "Model repository DIR/<name>/<version>/model.safetensors; each model "
          "serves its "
          "highest available version");
ABSL_FLAG(double, repository_poll_seconds, 5,
          "Seconds between repository scans (new versions load, removed ones "
          "unload); 0: once");
ABSL_FLAG(std::string, default_model, "",
          "Model of requests that name none (default: the first --model, else "
          "the first "
          "repository model)");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on for gRPC");
ABSL_FLAG(int, port, 50051, "gRPC port (0: pick a free one)");
ABSL_FLAG(int, metrics_port, 9464,
          "Port of the Prometheus /metrics endpoint (0: disabled)");
ABSL_FLAG(std::string, metrics_host, "0.0.0.0",
          "Address of the /metrics endpoint");
ABSL_FLAG(int, threads, 0, "Engine threads (0: all cores)");
ABSL_FLAG(int, max_inflight, 256,
          "Requests admitted at once; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, default_samples, 100,
          "T for requests that ask for 0 when the model sets none");
ABSL_FLAG(int, max_samples, 100000, "Largest T a request may ask for");
ABSL_FLAG(double, default_standard_error, 0,
          "Make precision the default: requests that give neither samples nor "
          "a target, to a model whose metadata sets no target, run passes "
          "until each mean's Monte-Carlo standard error is at most this (in "
          "output units, or probability); 0: off");
ABSL_FLAG(double, default_relative_error, 0,
          "As --default_standard_error, relative to the predictive std (0.01: "
          "1% of it); with both, both must hold; 0: off");
ABSL_FLAG(int, max_batch_rows, 1024, "Most input rows per request");
ABSL_FLAG(bool, inline_small_requests, true,
          "Compute a request of at most one small tile (262,144 multiply-adds, "
          "no intervals) on the gRPC thread that received it, sparing the "
          "hand-off to an engine thread and back");
ABSL_FLAG(std::string, precision, "",
          "f32 or bf16: the arithmetic of every model's products (bf16: "
          "bfloat16 weights and layer inputs, f32 accumulation); empty: each "
          "model's own metadata \"precision\" (default f32)");
ABSL_FLAG(std::string, max_cpu_isa, "default",
          "Most advanced instruction set the kernels may use: default "
          "(avx512_core_bf16: AMX's bf16 kernels change a seed's answer with "
          "the tiling), all, avx2, avx512_core, avx512_core_vnni, "
          "avx512_core_bf16, avx512_core_amx. avx2 makes every x86-64-v3 "
          "machine of a fleet compute the same bits for the same seed");
ABSL_FLAG(int64_t, max_interval_work, int64_t{1} << 27,
          "Most T x rows x outputs x interval levels per request (bounds the "
          "time spent computing predictive intervals)");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "Largest request or response message");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the server; with --tls_key, gRPC is served "
          "over TLS only");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set (mutual TLS) clients must present a "
          "certificate signed by it");
ABSL_FLAG(std::string, auth_token_file, "",
          "File of bearer tokens, one per line ('#' comments); when set, "
          "Inference calls need 'authorization: Bearer <token>' (health stays "
          "open)");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "Connections that have not completed the HTTP/2 (and TLS) "
          "handshake by then are closed");
ABSL_FLAG(int64_t, memory_quota_bytes, int64_t{2} << 30,
          "Memory gRPC may use for all connections' buffers (0: no cap)");
ABSL_FLAG(int, http_port, 8000,
          "Port of the Open Inference Protocol's HTTP/REST API (0: pick a "
          "free one, -1: none); same TLS, tokens and limits as gRPC");
ABSL_FLAG(std::string, http_host, "",
          "Address of the HTTP/REST API (empty: --host)");
ABSL_FLAG(int, http_threads, 2,
          "HTTP I/O threads (parsing and JSON; the engine computes)");
ABSL_FLAG(absl::Duration, http_idle_timeout, absl::Seconds(60),
          "An HTTP connection waiting this long for a request is closed");
ABSL_FLAG(absl::Duration, http_read_timeout, absl::Seconds(30),
          "Time an HTTP client has to send a whole request once it started "
          "(and to take the answer)");
ABSL_FLAG(int, http_max_connections, 1024,
          "Open HTTP connections at most; more are closed at once");
ABSL_FLAG(absl::Duration, memory_return_period, absl::Seconds(5),
          "How often free heap pages go back to the system (malloc_trim), so "
          "resident memory follows the live heap; 0: never");
ABSL_FLAG(int64_t, feedback_store_mb, 64,
          "Memory for predictions kept for Feedback (the oldest are evicted "
          "beyond it); 0: no feedback, responses carry no prediction ids");
ABSL_FLAG(absl::Duration, feedback_max_age, absl::Hours(1),
          "Predictions older than this take no feedback");
ABSL_FLAG(int, feedback_window, 1000,
          "Observations in each model version's rolling feedback figures");
ABSL_FLAG(int, feedback_max_items, 1024, "Items per Feedback call at most");
ABSL_FLAG(int, feedback_points, 128,
          "Pass outputs kept per regression output for feedback (a "
          "stratified summary of the T passes beyond it)");
ABSL_FLAG(double, adaptive_conformal_rate, 0,
          "Adaptive conformal inference's step gamma (e.g. 0.005 to 0.05): "
          "conformal levels follow the feedback's misses; 0: off");
ABSL_FLAG(absl::Duration, grace_period, absl::Seconds(10),
          "On SIGTERM/SIGINT: time in-flight calls get to finish");
ABSL_FLAG(absl::Duration, max_connection_age, absl::ZeroDuration(),
          "Close a gRPC connection gracefully (GOAWAY) once it is this old, so "
          "that clients reconnect and re-resolve (client-side balancing over a "
          "headless Service finds new pods); 0: never");
ABSL_FLAG(absl::Duration, max_connection_age_grace, absl::Seconds(30),
          "Time the calls of a connection closed for its age get to finish");
ABSL_FLAG(absl::Duration, drain_delay, absl::ZeroDuration(),
          "On SIGTERM/SIGINT, before --grace_period: time during which health "
          "says NOT_SERVING (and HTTP readiness 'not ready') while calls are "
          "still answered, so that balancers move traffic away before any "
          "call is refused; 0: drain at once");

namespace {

// absl flags keep the last occurrence; --model is documented as repeatable,
// so join every occurrence into one comma-separated value first.
std::vector<char*> JoinRepeatedModelFlags(int argc, char** argv,
                                          std::vector<std::string>* store) {
  std::vector<std::string> models;
  std::vector<char*> out = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" || a == "-model") {
      if (i + 1 < argc) models.push_back(argv[++i]);
    } else if (a.rfind("--model=", 0) == 0 || a.rfind("-model=", 0) == 0) {
      models.push_back(a.substr(a.find('=') + 1));
    } else {
      out.push_back(argv[i]);
    }
  }
  if (!models.empty()) {
    std::string joined = "--model=";
    for (size_t i = 0; i < models.size(); ++i)
      joined += (i ? "," : "") + models[i];
    store->push_back(joined);
    out.push_back(store->back().data());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mcdrop-server --model NAME=PATH [--port 50051] [flags]");
  std::vector<std::string> store;
  store.reserve(1);
  std::vector<char*> args = JoinRepeatedModelFlags(argc, argv, &store);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  spdlog::set_default_logger(spdlog::stderr_color_mt("mcdrop-server"));
  // Debian builds abseil without NDEBUG, which turns on absl::Mutex's
  // lock-order (deadlock) detector: every nested lock records an edge in a
  // graph whose arena is never returned to the system. Under load the
  // server's resident memory crept up by ~8 kB/s (soak: +6.5% in 90 s, the
  // heap itself flat) and each lock paid for the graph. A serving binary
  // runs without it; the tests keep it, where it catches lock-order bugs.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  mcdrop::server::PinAllocatorPolicy();

  // Signals are taken synchronously by this thread: block them before any
  // other thread starts, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::Status isa = mcdrop::SetMaxCpuIsa(absl::GetFlag(FLAGS_max_cpu_isa));
      !isa.ok()) {
    spdlog::error("--max_cpu_isa: {}", isa.ToString());
    return 1;
  }
  spdlog::info("kernels: {}", mcdrop::KernelPath());

  mcdrop::server::ServerOptions options;
  options.models = absl::GetFlag(FLAGS_model);
  options.model_repository = absl::GetFlag(FLAGS_model_repository);
  options.repository_poll =
      absl::Seconds(absl::GetFlag(FLAGS_repository_poll_seconds));
  options.default_model = absl::GetFlag(FLAGS_default_model);
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  if (absl::GetFlag(FLAGS_metrics_port) > 0) {
    options.metrics_address =
        absl::StrCat(absl::GetFlag(FLAGS_metrics_host), ":",
                     absl::GetFlag(FLAGS_metrics_port));
  }
  options.threads = absl::GetFlag(FLAGS_threads);
  options.precision = absl::GetFlag(FLAGS_precision);
  options.inline_small_requests = absl::GetFlag(FLAGS_inline_small_requests);
  options.limits.max_inflight = absl::GetFlag(FLAGS_max_inflight);
  options.limits.default_samples = absl::GetFlag(FLAGS_default_samples);
  options.limits.max_samples = absl::GetFlag(FLAGS_max_samples);
  options.limits.default_standard_error =
      absl::GetFlag(FLAGS_default_standard_error);
  options.limits.default_relative_error =
      absl::GetFlag(FLAGS_default_relative_error);
  options.limits.max_batch_rows = absl::GetFlag(FLAGS_max_batch_rows);
  options.limits.max_interval_work = absl::GetFlag(FLAGS_max_interval_work);
  options.limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  options.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  options.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  options.memory_quota_bytes = absl::GetFlag(FLAGS_memory_quota_bytes);
  options.max_connection_age = absl::GetFlag(FLAGS_max_connection_age);
  options.max_connection_age_grace =
      absl::GetFlag(FLAGS_max_connection_age_grace);
  options.memory_return_period = absl::GetFlag(FLAGS_memory_return_period);
  options.feedback.store_bytes = absl::GetFlag(FLAGS_feedback_store_mb) << 20;
  options.feedback.max_age = absl::GetFlag(FLAGS_feedback_max_age);
  options.feedback.window = absl::GetFlag(FLAGS_feedback_window);
  options.feedback.max_items = absl::GetFlag(FLAGS_feedback_max_items);
  options.feedback.max_points = absl::GetFlag(FLAGS_feedback_points);
  options.feedback.adaptive_rate = absl::GetFlag(FLAGS_adaptive_conformal_rate);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.http_host = absl::GetFlag(FLAGS_http_host);
  options.http_threads = absl::GetFlag(FLAGS_http_threads);
  options.http_idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  options.http_read_timeout = absl::GetFlag(FLAGS_http_read_timeout);
  options.http_max_connections = absl::GetFlag(FLAGS_http_max_connections);

  auto server = mcdrop::server::Server::Start(options);
  if (!server.ok()) {
    spdlog::error("cannot start: {}", server.status().ToString());
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received {}", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Drain(absl::GetFlag(FLAGS_drain_delay),
                   absl::GetFlag(FLAGS_grace_period));
  return 0;
}
