// Copyright 2026 The mcdrop Authors.

#include "server/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/request.h"
#include "server/status_util.h"

namespace mcdrop::server {
namespace {

using mcdrop::v1::PredictRequest;
using mcdrop::v1::PredictResponse;

// A unary reactor that records cancellation in a flag the engine can read
// even after the call is gone.
class PredictReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit PredictReactor(std::shared_ptr<std::atomic<bool>> cancelled)
      : cancelled_(std::move(cancelled)) {}
  void OnCancel() override { cancelled_->store(true); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<std::atomic<bool>> cancelled_;
};

struct PredictCall {
  PredictRequest request;
  PredictResponse response;
};

// Requests arrive as bytes (raw callback methods) so that a message that is
// not protobuf gets INVALID_ARGUMENT with a reason, not gRPC's bare
// UNIMPLEMENTED.
template <typename Message>
absl::Status ParseMessage(const grpc::ByteBuffer* bytes, Message* out) {
  grpc::ByteBuffer copy(*bytes);  // shares the slices
  const grpc::Status s =
      grpc::SerializationTraits<Message>::Deserialize(&copy, out);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request (", bytes->Length(), " bytes) is not a valid ",
        Message::descriptor()->full_name(), " message"));
  }
  return absl::OkStatus();
}

template <typename Message>
void SerializeMessage(const Message& message, grpc::ByteBuffer* out) {
  bool own_buffer;
  grpc::SerializationTraits<Message>::Serialize(message, out, &own_buffer);
}

class SimpleReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override { delete this; }
};

// A unary call answered on the gRPC thread: `auth` (the token check), the
// request parsed from bytes, `body` filling the response, the status sent.
template <typename Request, typename Response, typename Body>
grpc::ServerUnaryReactor* AnswerNow(const absl::Status& auth,
                                    const grpc::ByteBuffer* raw_request,
                                    grpc::ByteBuffer* raw_response, Body body) {
  auto* reactor = new SimpleReactor();
  Request request;
  Response response;
  absl::Status status = auth;
  if (status.ok()) status = ParseMessage(raw_request, &request);
  if (status.ok()) status = body(request, &response);
  if (status.ok()) SerializeMessage(response, raw_response);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// The call's deadline (when it has one) and its cancellation, as the engine
// checks them.
void StopOnCancelOrDeadline(std::chrono::system_clock::time_point deadline,
                            std::shared_ptr<std::atomic<bool>> cancelled,
                            PredictOptions* opt) {
  if (deadline != std::chrono::system_clock::time_point::max()) {
    opt->deadline = absl::FromChrono(deadline);
  }
  opt->should_stop = [cancelled = std::move(cancelled)] {
    return cancelled->load(std::memory_order_relaxed);
  };
}

}  // namespace

void DescribeModel(const ServedModel& served, bool is_default,
                   mcdrop::v1::ModelMetadata* out) {
  const Model& m = served.model;
  out->set_name(served.name);
  out->set_version(served.version);
  out->set_task(m.task() == Task::kRegression ? mcdrop::v1::REGRESSION
                                              : mcdrop::v1::CLASSIFICATION);
  out->set_input_size(m.input_size());
  out->set_output_size(m.output_size());
  for (int w : m.widths()) out->add_layer_sizes(w);
  const Shape shape = m.input_shape();
  out->add_input_shape(shape.c);
  if (!shape.flat()) {
    out->add_input_shape(shape.h);
    out->add_input_shape(shape.w);
  }
  if (m.has_layer_list()) {
    out->set_format(std::string(kModelFormatV2));
    out->set_layers(LayerListJson(m.spec().graph));
  } else {
    out->set_format(std::string(kModelFormat));
    out->set_activation(std::string(ActivationName(m.activation())));
  }
  for (const Stage& s : m.stages()) out->add_dropout(s.drop_rate);
  if (m.task() == Task::kRegression) out->set_tau(m.tau());
  out->set_default_samples(m.spec().default_samples);
  out->set_precision(std::string(PrecisionName(m.precision())));
  out->set_description(m.spec().description);
  out->set_load_time(
      absl::ToDoubleSeconds(served.load_time - absl::UnixEpoch()));
  out->set_is_default(is_default);
  out->set_source(served.source);
  for (float v : m.spec().input_mean) out->add_input_mean(v);
  for (float v : m.spec().input_std) out->add_input_std(v);
  if (const auto& c = m.spec().calibration) {
    auto* info = out->mutable_calibration();
    info->set_score(std::string(ConformalScoreName(c->score)));
    info->set_rows(c->rows());
    info->set_samples(c->samples);
    info->set_source(c->source);
    info->set_created(c->created);
    info->set_max_level(MaxFiniteLevel(c->rows()));
  }
}

void DescribeVersions(const ModelRegistry& registry, const std::string& name,
                      mcdrop::v1::ModelMetadata* out) {
  for (const VersionStatus& v : registry.Versions(name)) {
    auto* s = out->add_versions();
    s->set_version(v.version);
    switch (v.state) {
      case VersionState::kLoading:
        s->set_state(mcdrop::v1::ModelVersionStatus::LOADING);
        break;
      case VersionState::kAvailable:
        s->set_state(mcdrop::v1::ModelVersionStatus::AVAILABLE);
        break;
      case VersionState::kFailed:
        s->set_state(mcdrop::v1::ModelVersionStatus::FAILED);
        break;
    }
    s->set_reason(v.reason);
    if (v.state == VersionState::kAvailable) {
      s->set_load_time(absl::ToDoubleSeconds(v.load_time - absl::UnixEpoch()));
    }
    s->set_source(v.source);
  }
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

InferenceService::InferenceService(const ModelRegistry* models, Engine* engine,
                                   Metrics* metrics, FeedbackMonitor* feedback,
                                   Limits limits,
                                   std::vector<std::string> tokens)
    : models_(models),
      engine_(engine),
      metrics_(metrics),
      feedback_(feedback),
      limits_(limits),
      tokens_(std::move(tokens)) {}

bool InferenceService::TryAdmit() {
  if (inflight_.fetch_add(1) >= limits_.max_inflight) {
    inflight_.fetch_sub(1);
    return false;
  }
  metrics_->inflight().Increment();
  return true;
}

void InferenceService::Release() {
  inflight_.fetch_sub(1);
  metrics_->inflight().Decrement();
}

absl::Status InferenceService::Authenticate(
    const grpc::CallbackServerContext* context) const {
  if (tokens_.empty()) return absl::OkStatus();
  const auto& md = context->client_metadata();
  const auto it = md.find("authorization");
  if (it == md.end()) return CheckAuthorization(absl::nullopt);
  return CheckAuthorization(
      absl::string_view(it->second.data(), it->second.size()));
}

absl::Status InferenceService::CheckAuthorization(
    absl::optional<absl::string_view> value) const {
  if (tokens_.empty()) return absl::OkStatus();
  if (!value.has_value()) {
    return absl::UnauthenticatedError(
        "this server requires \"authorization: Bearer <token>\"");
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (value->size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value->substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization must be \"Bearer <token>\"");
  }
  const absl::string_view presented = value->substr(kScheme.size());
  // Every token is compared, whatever matched, so the time taken does not
  // tell which one (or how much of one) matched.
  bool ok = false;
  for (const std::string& t : tokens_) ok |= ConstantTimeEquals(presented, t);
  if (!ok) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

void InferenceService::CountRetry(const grpc::CallbackServerContext* context,
                                  Endpoint endpoint) const {
  const auto& metadata = context->client_metadata();
  const auto it = metadata.find("grpc-previous-rpc-attempts");
  if (it == metadata.end()) return;
  int previous = 0;
  if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()),
                       &previous)) {
    metrics_->CountRetryAttempt(endpoint, previous);
  }
}

// A PredictRequest that passed every check before the engine.
struct InferenceService::Admitted {
  std::shared_ptr<const ServedModel> model;
  PredictPlan plan;
};

absl::Status InferenceService::Admit(const grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* raw_request,
                                     PredictRequest* request,
                                     const ModelMetrics** mm,
                                     Admitted* admitted) {
  *mm = metrics_->Unknown();
  if (absl::Status auth = Authenticate(context); !auth.ok()) return auth;
  if (absl::Status parsed = ParseMessage(raw_request, request); !parsed.ok()) {
    return parsed;
  }
  if (draining_.load()) {
    return absl::UnavailableError("the server is shutting down");
  }
  auto served = models_->Get(request->model(), request->version());
  if (!served.ok()) return served.status();
  *mm = metrics_->ForModel(**served);
  if (!TryAdmit()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server is at its limit of ", limits_.max_inflight,
                     " requests in flight; retry later"));
  }
  absl::Status checked = ValidatePredictRequest(*request, (*served)->model,
                                                limits_, &admitted->plan);
  if (!checked.ok()) {
    Release();
    return checked;
  }
  (*mm)->ObserveInputs((*served)->model, request->inputs());
  feedback_->Prepare(**served, &admitted->plan);
  admitted->model = *std::move(served);
  return absl::OkStatus();
}

namespace {

// Counts (and, unless a client can cause it at will, logs) a refusal.
grpc::Status CountRefusal(const char* rpc, Endpoint endpoint,
                          const ModelMetrics* mm, const absl::Status& status) {
  const grpc::Status g = ToGrpcStatus(status);
  mm->CountRequest(endpoint, g.error_code());
  if (g.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
      g.error_code() != grpc::StatusCode::UNAVAILABLE &&
      g.error_code() != grpc::StatusCode::UNAUTHENTICATED) {
    spdlog::warn("{} {}: {}", rpc, CodeName(g.error_code()),
                 std::string(status.message()));
  }
  return g;
}

// Counts a finished call and logs what is neither a cancellation nor a
// deadline.
grpc::Status CountAnswer(const char* rpc, Endpoint endpoint,
                         const ModelMetrics* mm, const absl::Status& status,
                         absl::Time arrived) {
  const grpc::Status g = ToGrpcStatus(status);
  mm->CountRequest(endpoint, g.error_code());
  mm->ObserveDuration(endpoint, absl::ToDoubleSeconds(absl::Now() - arrived));
  if (!status.ok() && !absl::IsCancelled(status) &&
      !absl::IsDeadlineExceeded(status)) {
    spdlog::warn("{} {}: {}", rpc, CodeName(g.error_code()),
                 std::string(status.message()));
  }
  return g;
}

// One PredictStream call. Messages are written one at a time, in order:
// the engine's rounds queue them (Send) and OnWriteDone starts the next;
// End finishes the call once what is queued is written (at once, dropping
// the queue, on an error). The engine's last callback calls End, so the
// reactor outlives every callback that uses it.
class StreamReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit StreamReactor(std::shared_ptr<std::atomic<bool>> cancelled)
      : cancelled_(std::move(cancelled)) {}

  void Send(grpc::ByteBuffer message) {
    grpc::ByteBuffer* start = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;
      queue_.push_back(std::move(message));  // references stay valid
      if (!writing_) {
        writing_ = true;
        start = &queue_.front();
      }
    }
    if (start != nullptr) StartWrite(start);
  }

  void End(grpc::Status status) {
    bool finish_now = false;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;
      ended_ = true;
      end_status_ = std::move(status);
      if (!end_status_.ok()) {
        // Keep only the message being written.
        while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
      }
      finish_now = !writing_;
    }
    if (finish_now) Finish(end_status_);
  }

  void OnWriteDone(bool ok) override {
    grpc::ByteBuffer* next = nullptr;
    bool finish_now = false;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      if (!ok) {  // the client is gone: stop the passes, drop the rest
        cancelled_->store(true);
        queue_.clear();
      }
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        finish_now = ended_;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (finish_now) Finish(end_status_);
  }

  void OnCancel() override { cancelled_->store(true); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<std::atomic<bool>> cancelled_;
  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_;  // set once, under mu_, before Finish
};

}  // namespace

grpc::ServerUnaryReactor* InferenceService::Predict(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  const absl::Time arrived = absl::Now();
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* reactor = new PredictReactor(cancelled);
  CountRetry(context, Endpoint::kGrpcV1);
  // The request and response live until the engine's completion has run.
  auto call = std::make_shared<PredictCall>();
  const ModelMetrics* mm = nullptr;
  Admitted a;
  if (absl::Status s = Admit(context, raw_request, &call->request, &mm, &a);
      !s.ok()) {
    reactor->Finish(CountRefusal("Predict", Endpoint::kGrpcV1, mm, s));
    return reactor;
  }
  StopOnCancelOrDeadline(context->deadline(), cancelled, &a.plan.options);
  const int q = a.model->model.input_size();
  // The engine's handle on the model keeps the whole version alive.
  std::shared_ptr<const Model> pinned(a.model, &a.model->model);
  const InputMatrix inputs(call->request.inputs().data(), a.plan.rows, q);
  RunPlan(
      *engine_, std::move(pinned), inputs, a.plan, /*rounds=*/false,
      [this, reactor, call, raw_response, model = a.model, plan = a.plan, mm,
       arrived](absl::StatusOr<AdaptivePrediction> p) {
        absl::Status status = p.status();
        if (status.ok()) {
          FillPredictResponse(call->request, *model, plan, *p, &call->response);
          SetPredictionIds(feedback_->Record(*model, plan, *p),
                           &call->response);
          mm->Observe(*p, plan.adaptive.has_value());
          SerializeMessage(call->response, raw_response);
        } else {
          status = DeadlineIfPassed(std::move(status), plan.options.deadline);
        }
        const grpc::Status g =
            CountAnswer("Predict", Endpoint::kGrpcV1, mm, status, arrived);
        Release();
        reactor->Finish(g);
      });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::PredictStream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request) {
  const absl::Time arrived = absl::Now();
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* reactor = new StreamReactor(cancelled);
  CountRetry(context, Endpoint::kGrpcV1Stream);
  auto request = std::make_shared<PredictRequest>();
  const ModelMetrics* mm = nullptr;
  Admitted a;
  if (absl::Status s = Admit(context, raw_request, request.get(), &mm, &a);
      !s.ok()) {
    reactor->End(CountRefusal("PredictStream", Endpoint::kGrpcV1Stream, mm, s));
    return reactor;
  }
  StopOnCancelOrDeadline(context->deadline(), cancelled, &a.plan.options);
  const int q = a.model->model.input_size();
  std::shared_ptr<const Model> pinned(a.model, &a.model->model);
  const InputMatrix inputs(request->inputs().data(), a.plan.rows, q);
  auto message = [request, model = a.model, plan = a.plan,
                  feedback = feedback_](const AdaptivePrediction& answer) {
    PredictResponse response;
    FillPredictResponse(*request, *model, plan, answer, &response);
    if (answer.finished) {
      SetPredictionIds(feedback->Record(*model, plan, answer), &response);
    }
    grpc::ByteBuffer bytes;
    SerializeMessage(response, &bytes);
    return bytes;
  };
  RunPlan(
      *engine_, std::move(pinned), inputs, a.plan, /*rounds=*/true,
      [this, reactor, message, mm, arrived,
       has_target = a.plan.adaptive.has_value(),
       deadline =
           a.plan.options.deadline](absl::StatusOr<AdaptivePrediction> p) {
        absl::Status status = p.status();
        if (status.ok()) {
          mm->Observe(*p, has_target);
          reactor->Send(message(*p));
        } else {
          status = DeadlineIfPassed(std::move(status), deadline);
        }
        const grpc::Status g = CountAnswer(
            "PredictStream", Endpoint::kGrpcV1Stream, mm, status, arrived);
        Release();
        reactor->End(g);
      },
      [reactor, message, mm, cancelled](const AdaptivePrediction& so_far) {
        if (cancelled->load()) return false;
        reactor->Send(message(so_far));
        mm->stream_messages->Increment();
        return true;
      });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelMetadata(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  return AnswerNow<mcdrop::v1::GetModelMetadataRequest,
                   mcdrop::v1::ModelMetadata>(
      Authenticate(context), raw_request, raw_response,
      [this](const auto& request, auto* response) {
        return Metadata(request, response);
      });
}

absl::Status InferenceService::Metadata(
    const mcdrop::v1::GetModelMetadataRequest& request,
    mcdrop::v1::ModelMetadata* response) const {
  auto served = models_->Get(request.model(), request.version());
  if (!served.ok()) {
    // A model none of whose versions is available is still described, with
    // the states and reasons of its versions.
    const std::string name =
        request.model().empty() ? models_->default_name() : request.model();
    if (request.version() == 0 && !models_->Versions(name).empty()) {
      response->set_name(name);
      DescribeVersions(*models_, name, response);
      return absl::OkStatus();
    }
    return served.status();
  }
  DescribeModel(**served, (*served)->name == models_->default_name(), response);
  DescribeVersions(*models_, (*served)->name, response);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* InferenceService::Feedback(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  return AnswerNow<mcdrop::v1::FeedbackRequest, mcdrop::v1::FeedbackResponse>(
      Authenticate(context), raw_request, raw_response,
      [this](const auto& request, auto* response) {
        absl::Status s = feedback_->Submit(request, response);
        if (!s.ok()) {
          spdlog::warn("Feedback {}: {}",
                       CodeName(ToGrpcStatus(s).error_code()),
                       std::string(s.message()));
        }
        return s;
      });
}

grpc::ServerUnaryReactor* InferenceService::ListModels(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  return AnswerNow<mcdrop::v1::ListModelsRequest,
                   mcdrop::v1::ListModelsResponse>(
      Authenticate(context), raw_request, raw_response,
      [this](const auto&, auto* response) {
        AllModels(response);
        return absl::OkStatus();
      });
}

void InferenceService::AllModels(
    mcdrop::v1::ListModelsResponse* response) const {
  const std::string default_name = models_->default_name();
  for (const std::string& name : models_->Names()) {
    auto* out = response->add_models();
    auto served = models_->Get(name, 0);
    if (served.ok()) {
      DescribeModel(**served, name == default_name, out);
    } else {
      out->set_name(name);
    }
    DescribeVersions(*models_, name, out);
  }
}

}  // namespace mcdrop::server
