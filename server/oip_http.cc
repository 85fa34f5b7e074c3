// Copyright 2026 The mcdrop Authors.

#include "server/oip_http.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/status_util.h"

namespace mcdrop::server {
namespace {

using json = nlohmann::json;
using inference::InferParameter;

constexpr int kMaxJsonDepth = 16;  // nested data arrays included
constexpr char kHeaderLength[] = "inference-header-content-length";

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

// Thrown by the parser callback to stop a body that is too deep or too big.
struct TooLarge {
  std::string why;
};

// Every node the parser makes counts against the budget (values, keys,
// opened objects and arrays: "[[],[],...]" costs as much as numbers), and
// the budget is at most kMaxJsonNodes whatever the model, so no body builds
// a document of more than that many nodes.
constexpr int64_t kMaxJsonNodes = int64_t{8} << 20;
// A feedback body's JSON values at most (items are capped far below).
constexpr int64_t kMaxFeedbackJsonValues = int64_t{1} << 20;

// At most 200 bytes of a message that quotes the request, escaped.
std::string Quote(absl::string_view text) {
  constexpr size_t kMax = 200;
  std::string out = absl::CHexEscape(text.substr(0, kMax));
  if (text.size() > kMax) out += "...";
  return out;
}

absl::StatusOr<json> ParseJson(absl::string_view text, int64_t max_values) {
  const int64_t budget = std::min(max_values, kMaxJsonNodes);
  int64_t nodes = 0;
  json::parser_callback_t limit = [&](int depth, json::parse_event_t event,
                                      json&) {
    if (depth > kMaxJsonDepth) {
      throw TooLarge{absl::StrCat("the JSON is nested deeper than ",
                                  kMaxJsonDepth, " levels")};
    }
    if (event != json::parse_event_t::object_end &&
        event != json::parse_event_t::array_end && ++nodes > budget) {
      throw TooLarge{absl::StrCat(
          "the JSON holds more than ", budget,
          " values (the most rows this model takes, times its inputs; send "
          "larger tensors with the binary tensor extension)")};
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), limit);
  } catch (const TooLarge& e) {
    return Invalid(e.why);
  } catch (const json::exception& e) {
    return Invalid(
        absl::StrCat("the request is not valid JSON: ", Quote(e.what())));
  }
}

absl::Status ToParameter(const std::string& name, const json& v,
                         InferParameter* out) {
  switch (v.type()) {
    case json::value_t::boolean:
      out->set_bool_param(v.get<bool>());
      break;
    case json::value_t::number_integer:
      out->set_int64_param(v.get<int64_t>());
      break;
    case json::value_t::number_unsigned: {
      const uint64_t u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        out->set_int64_param(static_cast<int64_t>(u));
      } else {
        out->set_uint64_param(u);
      }
      break;
    }
    case json::value_t::number_float:
      out->set_double_param(v.get<double>());
      break;
    case json::value_t::string:
      out->set_string_param(v.get<std::string>());
      break;
    default:
      return Invalid(absl::StrCat("parameter \"", name,
                                  "\" must be a boolean, number or string"));
  }
  return absl::OkStatus();
}

// Appends the numbers of `data` (flat or nested arrays) in row-major order.
template <typename T>
absl::Status Flatten(const json& data, google::protobuf::RepeatedField<T>* out,
                     int depth = 0) {
  if (data.is_number()) {
    out->Add(data.get<T>());
    return absl::OkStatus();
  }
  if (!data.is_array() || depth > kMaxJsonDepth) {
    return Invalid(
        "input \"data\" must hold numbers, in flat or nested arrays");
  }
  for (const json& d : data) {
    if (absl::Status s = Flatten(d, out, depth + 1); !s.ok()) return s;
  }
  return absl::OkStatus();
}

const json* Member(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

absl::Status CheckKeys(const json& object, absl::string_view what,
                       std::initializer_list<absl::string_view> known) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool ok = false;
    for (absl::string_view k : known) ok |= it.key() == k;
    if (!ok) {
      return Invalid(absl::StrCat("unknown field \"", it.key(), "\" in ", what,
                                  " (expected ", absl::StrJoin(known, ", "),
                                  ")"));
    }
  }
  return absl::OkStatus();
}

// Reads one input; binary bytes come from `binary` at `*offset`.
absl::Status ReadInput(const json& in, absl::string_view binary, size_t* offset,
                       HttpInferRequest* out) {
  if (!in.is_object()) return Invalid("each input must be a JSON object");
  if (absl::Status s = CheckKeys(
          in, "an input", {"name", "shape", "datatype", "parameters", "data"});
      !s.ok()) {
    return s;
  }
  const json* name = Member(in, "name");
  const json* shape = Member(in, "shape");
  const json* datatype = Member(in, "datatype");
  if (name == nullptr || !name->is_string() || shape == nullptr ||
      !shape->is_array() || datatype == nullptr || !datatype->is_string()) {
    return Invalid(
        "each input needs \"name\" (a string), \"shape\" (an array of "
        "integers) and \"datatype\" (a string)");
  }
  auto* tensor = out->request.add_inputs();
  tensor->set_name(name->get<std::string>());
  tensor->set_datatype(datatype->get<std::string>());
  for (const json& d : *shape) {
    if (!d.is_number_integer()) {
      return Invalid("input \"shape\" must be an array of integers");
    }
    tensor->add_shape(d.get<int64_t>());
  }
  int64_t binary_size = -1;
  if (const json* p = Member(in, "parameters"); p != nullptr) {
    if (!p->is_object())
      return Invalid("input \"parameters\" must be an object");
    for (auto it = p->begin(); it != p->end(); ++it) {
      if (it.key() != "binary_data_size") {
        return Invalid(absl::StrCat("unknown input parameter \"", it.key(),
                                    "\" (mcdrop takes binary_data_size)"));
      }
      if (!it->is_number_unsigned()) {
        return Invalid(
            "input parameter \"binary_data_size\" must be a "
            "non-negative integer");
      }
      binary_size = static_cast<int64_t>(it->get<uint64_t>());
    }
  }
  const json* data = Member(in, "data");
  if (binary_size >= 0) {
    if (data != nullptr) {
      return Invalid("an input has both \"data\" and binary_data_size");
    }
    if (static_cast<uint64_t>(binary_size) > binary.size() - *offset) {
      return Invalid(absl::StrCat(
          "input \"", tensor->name(), "\" says binary_data_size ", binary_size,
          " but only ", binary.size() - *offset, " binary bytes are left"));
    }
    out->request.add_raw_input_contents(
        std::string(binary.substr(*offset, binary_size)));
    *offset += binary_size;
    return absl::OkStatus();
  }
  if (data == nullptr) {
    return Invalid(absl::StrCat("input \"", tensor->name(),
                                "\" has neither \"data\" nor "
                                "parameters.binary_data_size"));
  }
  const std::string& type = tensor->datatype();
  if (type == "FP64") {
    return Flatten(*data, tensor->mutable_contents()->mutable_fp64_contents());
  }
  if (type == "FP32" || type == "FP16" || type == "BF16") {
    // JSON numbers are values, whatever the width they were sent for.
    tensor->set_datatype("FP32");
    return Flatten(*data, tensor->mutable_contents()->mutable_fp32_contents());
  }
  return absl::OkStatus();  // the translation names the unsupported type
}

absl::Status ReadOutputs(const json& outputs, HttpInferRequest* out) {
  if (!outputs.is_array()) return Invalid("\"outputs\" must be an array");
  for (const json& o : outputs) {
    if (!o.is_object()) return Invalid("each output must be a JSON object");
    if (absl::Status s = CheckKeys(o, "an output", {"name", "parameters"});
        !s.ok()) {
      return s;
    }
    const json* name = Member(o, "name");
    if (name == nullptr || !name->is_string()) {
      return Invalid("each output needs a \"name\" (a string)");
    }
    out->request.add_outputs()->set_name(name->get<std::string>());
    const json* p = Member(o, "parameters");
    if (p == nullptr) continue;
    if (!p->is_object())
      return Invalid("output \"parameters\" must be an object");
    for (auto it = p->begin(); it != p->end(); ++it) {
      if (it.key() != "binary_data" || !it->is_boolean()) {
        return Invalid(absl::StrCat(
            "output parameter \"", it.key(),
            "\" is not supported (mcdrop takes binary_data, a boolean)"));
      }
      (it->get<bool>() ? out->binary_outputs : out->json_outputs)
          .push_back(name->get<std::string>());
    }
  }
  return absl::OkStatus();
}

// The JSON numbers of one raw output.
json OutputData(const std::string& datatype, const std::string& raw) {
  json data = json::array();
  auto read = [&](auto type_tag) {
    using T = decltype(type_tag);
    const size_t n = raw.size() / sizeof(T);
    data.get_ref<json::array_t&>().reserve(n);
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
      data.push_back(v);
    }
  };
  if (datatype == "FP64") {
    read(double{});
  } else if (datatype == "FP32") {
    read(float{});
  } else if (datatype == "INT64") {
    read(int64_t{});
  } else if (datatype == "BOOL") {
    read(bool{});
  }
  return data;
}

json ParametersJson(
    const google::protobuf::Map<std::string, InferParameter>& parameters) {
  json out = json::object();
  for (const auto& [name, p] : parameters) {
    switch (p.parameter_choice_case()) {
      case InferParameter::kBoolParam:
        out[name] = p.bool_param();
        break;
      case InferParameter::kInt64Param:
        out[name] = p.int64_param();
        break;
      case InferParameter::kUint64Param:
        out[name] = p.uint64_param();
        break;
      case InferParameter::kDoubleParam:
        out[name] = p.double_param();
        break;
      case InferParameter::kStringParam:
        out[name] = p.string_param();
        break;
      default:
        break;
    }
  }
  return out;
}

json TensorsJson(const google::protobuf::RepeatedPtrField<
                 inference::ModelMetadataResponse::TensorMetadata>& tensors) {
  json out = json::array();
  for (const auto& t : tensors) {
    out.push_back(
        {{"name", t.name()},
         {"datatype", t.datatype()},
         {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}});
  }
  return out;
}

// "%41" -> "A"; false on a malformed escape.
bool PercentDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    int v = 0;
    if (i + 2 >= in.size()) return false;
    for (int k = 1; k <= 2; ++k) {
      const char c = in[i + k];
      v = v * 16 + (absl::ascii_isdigit(c) ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1000);
    }
    if (v < 0) return false;
    out->push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

// Text from requests (names, ids, what an error quotes) may be any bytes:
// invalid UTF-8 becomes U+FFFD instead of an exception.
std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

HttpResponse Json(int status, const json& body) {
  return HttpResponse{status, "application/json", {}, Dump(body)};
}

}  // namespace

absl::StatusOr<mcdrop::v1::FeedbackRequest> ParseHttpFeedbackRequest(
    absl::string_view body, const std::string& model,
    const std::string& version) {
  mcdrop::v1::FeedbackRequest out;
  out.set_model(model);
  if (!version.empty()) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(version, &v) || v <= 0) {
      return Invalid(absl::StrCat("version ", Quote(version),
                                  " is not a positive integer"));
    }
    out.set_version(v);
  }
  auto parsed = ParseJson(body, kMaxFeedbackJsonValues);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  if (!j.is_object()) return Invalid("the feedback must be a JSON object");
  if (absl::Status s = CheckKeys(j, "the feedback", {"items"}); !s.ok()) {
    return s;
  }
  const json* items = Member(j, "items");
  if (items == nullptr || !items->is_array()) {
    return Invalid(
        "the feedback needs \"items\": an array of {\"id\", "
        "\"targets\" or \"label\"}");
  }
  for (size_t i = 0; i < items->size(); ++i) {
    const json& it = (*items)[i];
    const std::string where = absl::StrCat("items[", i, "]");
    if (!it.is_object()) return Invalid(where + " must be an object");
    if (absl::Status s = CheckKeys(it, where, {"id", "targets", "label"});
        !s.ok()) {
      return s;
    }
    auto* item = out.add_items();
    const json* id = Member(it, "id");
    if (id == nullptr || !id->is_string()) {
      return Invalid(where + ".id must be a string");
    }
    item->set_id(id->get<std::string>());
    if (const json* t = Member(it, "targets"); t != nullptr) {
      if (t->is_number()) {
        item->add_targets(t->get<double>());
      } else if (t->is_array()) {
        for (const json& v : *t) {
          if (!v.is_number()) {
            return Invalid(where + ".targets must hold numbers");
          }
          item->add_targets(v.get<double>());
        }
      } else {
        return Invalid(where + ".targets must be a number or an array");
      }
    }
    if (const json* l = Member(it, "label"); l != nullptr) {
      if (!l->is_number_integer() ||
          l->get<int64_t>() < std::numeric_limits<int32_t>::min() ||
          l->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Invalid(where + ".label must be an integer");
      }
      item->set_label(static_cast<int32_t>(l->get<int64_t>()));
    }
  }
  return out;
}

std::string FeedbackResponseJson(const mcdrop::v1::FeedbackRequest& request,
                                 const mcdrop::v1::FeedbackResponse& response) {
  json results = json::array();
  for (const auto& r : response.results()) {
    results.push_back(
        {{"id", r.id()},
         {"outcome", mcdrop::v1::FeedbackResult::Outcome_Name(r.outcome())},
         {"message", r.message()}});
  }
  return Dump({{"model_name", request.model()},
               {"accepted", response.accepted()},
               {"results", std::move(results)}});
}

absl::StatusOr<HttpInferRequest> ParseHttpInferRequest(
    absl::string_view body, absl::optional<absl::string_view> header_length,
    int64_t max_values) {
  absl::string_view text = body, binary;
  if (header_length.has_value()) {
    uint64_t n;
    if (!absl::SimpleAtoi(*header_length, &n) || n > body.size()) {
      return Invalid(absl::StrCat(
          "Inference-Header-Content-Length \"", *header_length,
          "\" is not a byte count within the body's ", body.size(), " bytes"));
    }
    text = body.substr(0, n);
    binary = body.substr(n);
  }
  auto parsed = ParseJson(text, max_values);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  if (!j.is_object()) return Invalid("the request must be a JSON object");
  if (absl::Status s = CheckKeys(j, "the request",
                                 {"id", "parameters", "inputs", "outputs"});
      !s.ok()) {
    return s;
  }
  HttpInferRequest out;
  if (const json* id = Member(j, "id"); id != nullptr) {
    if (!id->is_string()) return Invalid("\"id\" must be a string");
    out.request.set_id(id->get<std::string>());
  }
  if (const json* p = Member(j, "parameters"); p != nullptr) {
    if (!p->is_object()) return Invalid("\"parameters\" must be an object");
    for (auto it = p->begin(); it != p->end(); ++it) {
      if (it.key() == "binary_data_output") {
        if (!it->is_boolean()) {
          return Invalid("parameter \"binary_data_output\" must be a boolean");
        }
        out.binary_all = it->get<bool>();
        continue;
      }
      if (absl::Status s = ToParameter(
              it.key(), *it, &(*out.request.mutable_parameters())[it.key()]);
          !s.ok()) {
        return s;
      }
    }
  }
  const json* inputs = Member(j, "inputs");
  if (inputs == nullptr || !inputs->is_array()) {
    return Invalid("the request needs \"inputs\", an array of tensors");
  }
  size_t offset = 0;
  for (const json& in : *inputs) {
    if (absl::Status s = ReadInput(in, binary, &offset, &out); !s.ok()) {
      return s;
    }
  }
  if (offset != binary.size()) {
    return Invalid(absl::StrCat("the body has ", binary.size() - offset,
                                " binary bytes no input claims"));
  }
  if (const json* outputs = Member(j, "outputs"); outputs != nullptr) {
    if (absl::Status s = ReadOutputs(*outputs, &out); !s.ok()) return s;
  }
  return out;
}

bool HttpInferRequest::Binary(const std::string& name) const {
  for (const std::string& b : binary_outputs) {
    if (b == name) return true;
  }
  for (const std::string& j : json_outputs) {
    if (j == name) return false;
  }
  return binary_all;
}

HttpResponse HttpInferResponse(const HttpInferRequest& request,
                               const inference::ModelInferResponse& response,
                               int64_t max_bytes) {
  int64_t json_numbers = 0;
  for (int i = 0; i < response.outputs_size(); ++i) {
    if (request.Binary(response.outputs(i).name())) continue;
    const std::string& type = response.outputs(i).datatype();
    json_numbers +=
        static_cast<int64_t>(response.raw_output_contents(i).size()) /
        (type == "FP32"   ? 4
         : type == "BOOL" ? 1
                          : 8);
  }
  constexpr int64_t kBytesPerNumber = 25;  // "-1.2345678901234567e-123,"
  if (json_numbers * kBytesPerNumber > max_bytes) {
    return HttpError(Invalid(absl::StrCat(
        "the answer holds ", json_numbers,
        " numbers; as JSON it could exceed the server's limit of ", max_bytes,
        " bytes: ask for the large outputs with \"binary_data\": true")));
  }
  json j = {{"model_name", response.model_name()},
            {"model_version", response.model_version()},
            {"parameters", ParametersJson(response.parameters())}};
  if (!response.id().empty()) j["id"] = response.id();
  json outputs = json::array();
  std::string binary;
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& t = response.outputs(i);
    const std::string& raw = response.raw_output_contents(i);
    json o = {
        {"name", t.name()},
        {"datatype", t.datatype()},
        {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}};
    if (request.Binary(t.name())) {
      o["parameters"] = {{"binary_data_size", raw.size()}};
      binary += raw;
    } else {
      o["data"] = OutputData(t.datatype(), raw);
    }
    outputs.push_back(std::move(o));
  }
  j["outputs"] = std::move(outputs);
  HttpResponse r{200, "application/json", {}, Dump(j)};
  if (!binary.empty()) {
    r.content_type = "application/octet-stream";
    r.headers.emplace_back("Inference-Header-Content-Length",
                           absl::StrCat(r.body.size()));
    r.body += binary;
  }
  return r;
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpResponse HttpError(const absl::Status& status) {
  HttpResponse r = Json(HttpStatusOf(status.code()),
                        {{"error", std::string(status.message())}});
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
  } else if (r.status == 429 || r.status == 503) {
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

std::string ModelMetadataJson(const inference::ModelMetadataResponse& m) {
  return Dump(json({{"name", m.name()},
                    {"versions", std::vector<std::string>(m.versions().begin(),
                                                          m.versions().end())},
                    {"platform", m.platform()},
                    {"inputs", TensorsJson(m.inputs())},
                    {"outputs", TensorsJson(m.outputs())}}));
}

std::string ServerMetadataJson(const inference::ServerMetadataResponse& m) {
  return Dump(
      json({{"name", m.name()},
            {"version", m.version()},
            {"extensions", std::vector<std::string>(m.extensions().begin(),
                                                    m.extensions().end())}}));
}

namespace {

HttpResponse MethodNotAllowed(const HttpRequest& req, absl::string_view path,
                              const char* allowed) {
  HttpResponse r = HttpError(absl::UnimplementedError(
      absl::StrCat(Quote(req.method), " is not allowed on ", Quote(path),
                   " (use ", allowed, ")")));
  r.status = 405;
  r.headers.emplace_back("Allow", allowed);
  return r;
}

}  // namespace

absl::variant<OipHttpHandler::Route, HttpResponse> OipHttpHandler::Resolve(
    const HttpRequest& req) const {
  const absl::string_view path =
      absl::string_view(req.target).substr(0, req.target.find('?'));
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    std::string decoded;
    if (!PercentDecode(p, &decoded)) {
      return HttpError(Invalid("malformed percent-escape in the path"));
    }
    parts.push_back(std::move(decoded));
  }
  auto not_found = [&] {
    return HttpError(absl::NotFoundError(
        absl::StrCat("no such path: ", Quote(path),
                     " (the Open Inference Protocol's paths are under /v2)")));
  };
  const size_t n = parts.size();
  Route route;
  if (n == 1 && parts[0] == "v2") {
    route.action = Action::kServerMetadata;
  } else if (n == 3 && parts[0] == "v2" && parts[1] == "health" &&
             (parts[2] == "live" || parts[2] == "ready")) {
    route.action = parts[2] == "live" ? Action::kLive : Action::kReady;
  } else if (n >= 3 && parts[0] == "v2" && parts[1] == "models") {
    // /v2/models/{m}[/versions/{v}][/ready|/infer]
    route.model = parts[2];
    size_t next = 3;
    if (n >= 5 && parts[3] == "versions") {
      route.version = parts[4];
      next = 5;
    }
    if (next == n) {
      route.action = Action::kModelMetadata;
    } else if (next + 1 == n && parts[next] == "ready") {
      route.action = Action::kModelReady;
    } else if (next + 1 == n && parts[next] == "infer") {
      route.action = Action::kInfer;
    } else if (next + 1 == n && parts[next] == "feedback") {
      route.action = Action::kFeedback;
    } else {
      return not_found();
    }
  } else {
    return not_found();
  }
  const bool post =
      route.action == Action::kInfer || route.action == Action::kFeedback;
  const char* method = post ? "POST" : "GET";
  if (req.method != method) return MethodNotAllowed(req, path, method);
  if (route.action == Action::kModelMetadata ||
      route.action == Action::kModelReady || post) {
    const absl::Status auth =
        backend_->inference().CheckAuthorization(req.Header("authorization"));
    if (!auth.ok()) {
      if (route.action == Action::kInfer) {
        backend_->metrics().Unknown()->CountRequest(
            Endpoint::kHttpOip, ToGrpcStatus(auth).error_code());
      }
      return HttpError(auth);
    }
  }
  return route;
}

absl::optional<HttpResponse> OipHttpHandler::Screen(
    const HttpRequest& headers) const {
  auto resolved = Resolve(headers);
  if (auto* refusal = absl::get_if<HttpResponse>(&resolved)) {
    return std::move(*refusal);
  }
  return absl::nullopt;
}

void OipHttpHandler::operator()(std::shared_ptr<HttpExchange> exchange) const {
  auto resolved = Resolve(exchange->request());
  if (auto* refusal = absl::get_if<HttpResponse>(&resolved)) {
    return exchange->Respond(std::move(*refusal));
  }
  const Route& route = absl::get<Route>(resolved);
  switch (route.action) {
    case Action::kServerMetadata: {
      inference::ServerMetadataResponse m;
      OipBackend::ServerMetadata(&m);
      return exchange->Respond(
          {200, "application/json", {}, ServerMetadataJson(m)});
    }
    case Action::kLive:
    case Action::kReady: {
      const bool live = route.action == Action::kLive;
      const bool ok = live || backend_->ServerReady();
      // The protocol: 200 for true, a 4xx for false.
      return exchange->Respond(
          Json(ok ? 200 : 400, {{live ? "live" : "ready", ok}}));
    }
    case Action::kModelReady: {
      const bool ok = backend_->ModelReady(route.model, route.version);
      return exchange->Respond(Json(ok ? 200 : 400, {{"ready", ok}}));
    }
    case Action::kModelMetadata: {
      inference::ModelMetadataResponse m;
      const absl::Status s =
          backend_->ModelMetadata(route.model, route.version, &m);
      return exchange->Respond(
          s.ok()
              ? HttpResponse{200, "application/json", {}, ModelMetadataJson(m)}
              : HttpError(s));
    }
    case Action::kInfer:
      return Infer(std::move(exchange), route.model, route.version);
    case Action::kFeedback: {
      auto parsed = ParseHttpFeedbackRequest(exchange->request().body,
                                             route.model, route.version);
      mcdrop::v1::FeedbackResponse response;
      absl::Status s = parsed.status();
      if (s.ok()) {
        s = backend_->inference().feedback()->Submit(*parsed, &response);
      }
      return exchange->Respond(
          s.ok() ? HttpResponse{200,
                                "application/json",
                                {},
                                FeedbackResponseJson(*parsed, response)}
                 : HttpError(s));
    }
  }
}

void OipHttpHandler::Infer(std::shared_ptr<HttpExchange> exchange,
                           const std::string& model,
                           const std::string& version) const {
  auto served = backend_->Find(model, version);
  if (!served.ok()) {
    backend_->metrics().Unknown()->CountRequest(
        Endpoint::kHttpOip, ToGrpcStatus(served.status()).error_code());
    return exchange->Respond(HttpError(served.status()));
  }
  const HttpRequest& req = exchange->request();
  const int64_t max_values = int64_t{backend_->limits().max_batch_rows} *
                                 (*served)->model.input_size() +
                             1024;
  auto parsed =
      ParseHttpInferRequest(req.body, req.Header(kHeaderLength), max_values);
  if (!parsed.ok()) {
    backend_->metrics().ForModel(**served)->CountRequest(
        Endpoint::kHttpOip, grpc::StatusCode::INVALID_ARGUMENT);
    return exchange->Respond(HttpError(parsed.status()));
  }
  struct Call {
    HttpInferRequest http;
    inference::ModelInferResponse response;
  };
  auto call = std::make_shared<Call>();
  call->http = *std::move(parsed);
  call->http.request.set_model_name(model);
  call->http.request.set_model_version(version);
  const int64_t max_bytes = backend_->limits().max_message_bytes;
  std::weak_ptr<HttpExchange> weak = exchange;
  backend_->Infer(
      Endpoint::kHttpOip, &call->http.request, &call->response,
      absl::InfiniteFuture(),
      [weak] {
        auto e = weak.lock();
        return e == nullptr || e->cancelled();
      },
      [exchange = std::move(exchange), call, max_bytes](absl::Status status) {
        if (!status.ok()) return exchange->Respond(HttpError(status));
        // On an engine thread: nothing may escape.
        try {
          exchange->Respond(
              HttpInferResponse(call->http, call->response, max_bytes));
        } catch (const std::exception& e) {
          exchange->Respond(HttpError(absl::InternalError(
              absl::StrCat("the answer could not be written: ", e.what()))));
        }
      });
}

}  // namespace mcdrop::server
