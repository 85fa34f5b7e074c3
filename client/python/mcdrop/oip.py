"""Open Inference Protocol (KServe V2) clients of mcdrop-server, over HTTP/REST
(the standard library only) and over gRPC (grpcio and the stubs shipped in
mcdrop.inference), taking and returning NumPy arrays. They speak the published
protocol, so they also call other OIP servers (Triton, KServe, MLServer).

    from mcdrop.oip import OipHttpClient
    c = OipHttpClient("http://localhost:8000")
    r = c.infer("concrete", np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28]]),
                samples=1000, seed=7, interval_levels=[0.9])
    r["mean"], r["std"], r["interval_lower"], r.parameters["seed"]

Errors are OipError with .status (HTTP status, or the gRPC code's name) and
the server's message. The command line is `mcdrop-oip` (see main()).
"""
import argparse
import http.client
import json
import ssl
import sys
import urllib.parse

import numpy as np

_DTYPES = {"FP64": np.float64, "FP32": np.float32, "FP16": np.float16,
           "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


class OipError(Exception):
    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class InferResult:
    """One inference answer: outputs by name (NumPy arrays of their shape and
    datatype), the response parameters (mcdrop: samples, seed, prediction_id),
    id, model."""

    def __init__(self, model_name, model_version, request_id, parameters, outputs):
        self.model_name, self.model_version = model_name, model_version
        self.id, self.parameters, self.outputs = request_id, parameters, outputs

    def __getitem__(self, name):
        return self.outputs[name]

    def __repr__(self):
        shapes = {k: v.shape for k, v in self.outputs.items()}
        return f"InferResult({self.model_name}, {shapes}, {self.parameters})"


def _parameters(samples, seed, mode, exclude_noise, interval_levels, timeout_us,
                predictive_draws=None):
    p = {}
    if predictive_draws is not None:
        p["predictive_draws"] = bool(predictive_draws)
    if samples is not None:
        p["samples"] = int(samples)
    if seed is not None:
        p["seed"] = int(seed)
    if mode is not None:
        p["mode"] = mode
    if exclude_noise is not None:
        p["exclude_noise"] = bool(exclude_noise)
    if interval_levels:
        p["interval_levels"] = ",".join(repr(float(x)) for x in interval_levels)
    if timeout_us is not None:
        p["timeout"] = int(timeout_us)
    return p


class OipHttpClient:
    def __init__(self, url="http://localhost:8000", token=None, timeout=30.0,
                 ssl_context=None):
        """url: http://host:port or https://host:port. token: sent as
        "Authorization: Bearer <token>". ssl_context: for https (default:
        the system's roots)."""
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"url must be http:// or https://, got {url!r}")
        self._https, self._host = u.scheme == "https", u.netloc
        self._timeout, self._ssl = timeout, ssl_context
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._conn = None

    def _connection(self):
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, timeout=self._timeout,
                    context=self._ssl or ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, timeout=self._timeout)
        return self._conn

    def request(self, method, path, body=None, headers=None):
        """One request on the kept-alive connection: (status, headers, body)."""
        h = dict(self._headers, **(headers or {}))
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, resp, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a kept-alive connection the server closed
                if attempt:
                    raise

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _json(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        doc = json.loads(data) if data else {}
        if status != 200:
            raise OipError(status, doc.get("error", data.decode(errors="replace")))
        return doc

    @staticmethod
    def _model_path(model, version):
        p = "/v2/models/" + urllib.parse.quote(model, safe="")
        return p + ("/versions/" + urllib.parse.quote(str(version), safe="") if version else "")

    def live(self):
        return self.request("GET", "/v2/health/live")[0] == 200

    def ready(self):
        return self.request("GET", "/v2/health/ready")[0] == 200

    def model_ready(self, model, version=None):
        return self.request("GET", self._model_path(model, version) + "/ready")[0] == 200

    def server_metadata(self):
        return self._json("GET", "/v2")

    def model_metadata(self, model, version=None):
        return self._json("GET", self._model_path(model, version))

    def infer(self, model, inputs, version=None, samples=None, seed=None, mode=None,
              exclude_noise=None, interval_levels=None, outputs=None, binary=True,
              request_id=None, timeout_us=None, input_name="input", predictive_draws=None):
        """inputs: an array [B, ...] (its dtype picks FP32/FP64/FP16). With
        binary (the default) tensors travel as raw bytes (the binary tensor
        extension); else as JSON numbers."""
        x = np.ascontiguousarray(inputs)
        if x.dtype not in _NAMES:
            x = x.astype(np.float32)
        tensor = {"name": input_name, "shape": list(x.shape), "datatype": _NAMES[x.dtype]}
        raw = b""
        if binary:
            raw = x.astype(x.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
        else:
            tensor["data"] = x.ravel().tolist()
        req = {"inputs": [tensor],
               "parameters": _parameters(samples, seed, mode, exclude_noise,
                                         interval_levels, timeout_us, predictive_draws)}
        if request_id is not None:
            req["id"] = request_id
        if outputs:
            req["outputs"] = [{"name": n, "parameters": {"binary_data": bool(binary)}}
                              for n in outputs]
        elif binary:
            req["parameters"]["binary_data_output"] = True
        head = json.dumps(req).encode()
        headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
        if binary:
            headers["Inference-Header-Content-Length"] = str(len(head))
        status, resp, data = self.request("POST", self._model_path(model, version) + "/infer",
                                          head + raw, headers)
        header_length = resp.getheader("Inference-Header-Content-Length")
        n = int(header_length) if header_length is not None else len(data)
        doc = json.loads(data[:n]) if data else {}
        if status != 200:
            raise OipError(status, doc.get("error", ""))
        return _result(doc, data[n:])

    def feedback(self, model, ids, targets=None, labels=None, version=None):
        """mcdrop's extension: what was observed for earlier predictions'
        rows (ids "<parameters['prediction_id']>:<row>"). Regression: targets
        ([N] or [N, D]); classification: labels [N]. Returns the server's
        {"accepted", "results": [{"id", "outcome", "message"}]}."""
        if (targets is None) == (labels is None):
            raise ValueError("give targets (regression) or labels (classification)")
        if targets is not None:
            t = np.asarray(targets, dtype=np.float64).reshape(len(ids), -1)
            items = [{"id": i, "targets": row.tolist()} for i, row in zip(ids, t)]
        else:
            items = [{"id": i, "label": int(y)} for i, y in zip(ids, labels, strict=True)]
        body = json.dumps({"items": items}).encode()
        status, _, data = self.request("POST", self._model_path(model, version) + "/feedback", body,
                                       {"Content-Type": "application/json"})
        doc = json.loads(data) if data else {}
        if status != 200:
            raise OipError(status, doc.get("error", ""))
        return doc


def _result(doc, binary):
    outs, offset = {}, 0
    for o in doc.get("outputs", []):
        dtype = np.dtype(_DTYPES[o["datatype"]]).newbyteorder("<")
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            a = np.frombuffer(binary[offset:offset + size], dtype=dtype)
            offset += size
        else:
            a = np.array(o["data"], dtype=dtype)
        outs[o["name"]] = a.reshape(o["shape"])
    return InferResult(doc.get("model_name"), doc.get("model_version"), doc.get("id"),
                       doc.get("parameters", {}), outs)


class OipGrpcClient:
    """The same calls over gRPC (inference.GRPCInferenceService)."""

    def __init__(self, target="localhost:50051", token=None, timeout=30.0,
                 credentials=None, max_message_bytes=64 << 20):
        import grpc
        from mcdrop.inference import open_inference_grpc_pb2 as pb
        from mcdrop.inference import open_inference_grpc_pb2_grpc as pb_grpc
        self._grpc, self._pb = grpc, pb
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._channel = (grpc.secure_channel(target, credentials, options) if credentials
                         else grpc.insecure_channel(target, options))
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout

    def _call(self, method, request):
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout,
                                               metadata=self._metadata)
        except self._grpc.RpcError as e:
            raise OipError(e.code().name, e.details()) from None

    def live(self):
        return self._call("ServerLive", self._pb.ServerLiveRequest()).live

    def ready(self):
        return self._call("ServerReady", self._pb.ServerReadyRequest()).ready

    def model_ready(self, model, version=None):
        return self._call("ModelReady", self._pb.ModelReadyRequest(
            name=model, version=str(version or ""))).ready

    def server_metadata(self):
        m = self._call("ServerMetadata", self._pb.ServerMetadataRequest())
        return {"name": m.name, "version": m.version, "extensions": list(m.extensions)}

    def model_metadata(self, model, version=None):
        m = self._call("ModelMetadata", self._pb.ModelMetadataRequest(
            name=model, version=str(version or "")))
        t = lambda ts: [{"name": x.name, "datatype": x.datatype, "shape": list(x.shape)} for x in ts]  # noqa: E731
        return {"name": m.name, "versions": list(m.versions), "platform": m.platform,
                "inputs": t(m.inputs), "outputs": t(m.outputs)}

    def infer(self, model, inputs, version=None, samples=None, seed=None, mode=None,
              exclude_noise=None, interval_levels=None, outputs=None, request_id=None,
              timeout_us=None, input_name="input", predictive_draws=None):
        pb = self._pb
        x = np.ascontiguousarray(inputs)
        if x.dtype not in _NAMES:
            x = x.astype(np.float32)
        req = pb.ModelInferRequest(model_name=model, model_version=str(version or ""),
                                   id=request_id or "")
        req.inputs.add(name=input_name, datatype=_NAMES[x.dtype], shape=list(x.shape))
        req.raw_input_contents.append(x.astype(x.dtype.newbyteorder("<")).tobytes())
        for k, v in _parameters(samples, seed, mode, exclude_noise, interval_levels,
                                timeout_us, predictive_draws).items():
            p = req.parameters[k]
            if isinstance(v, bool):
                p.bool_param = v
            elif isinstance(v, int):
                if v < 2 ** 63:
                    p.int64_param = v
                else:
                    p.uint64_param = v
            else:
                p.string_param = v
        for n in outputs or []:
            req.outputs.add(name=n)
        resp = self._call("ModelInfer", req)
        outs = {}
        for o, raw in zip(resp.outputs, resp.raw_output_contents):
            dtype = np.dtype(_DTYPES[o.datatype]).newbyteorder("<")
            outs[o.name] = np.frombuffer(raw, dtype=dtype).reshape(list(o.shape))
        params = {}
        for k, p in resp.parameters.items():
            params[k] = getattr(p, p.WhichOneof("parameter_choice"))
        return InferResult(resp.model_name, resp.model_version, resp.id, params, outs)


def _rows(text):
    return np.array([[float(v) for v in row.split(",")] for row in text.split(";")])


def main(argv=None):
    """mcdrop-oip: health, metadata and inference over the Open Inference
    Protocol, from the command line; prints JSON."""
    ap = argparse.ArgumentParser(prog="mcdrop-oip", description=main.__doc__)
    ap.add_argument("--url", default="http://localhost:8000",
                    help="HTTP/REST base URL (default %(default)s)")
    ap.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC at this target instead")
    ap.add_argument("--token", help="bearer token")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("health", help="live and ready")
    sub.add_parser("server", help="server metadata")
    m = sub.add_parser("metadata", help="a model's inputs and outputs")
    m.add_argument("model")
    i = sub.add_parser("infer", help="MC-dropout predictions")
    i.add_argument("model")
    i.add_argument("--input", required=True, help='rows "1,2,3;4,5,6"')
    i.add_argument("--samples", type=int)
    i.add_argument("--seed", type=int)
    i.add_argument("--mode", choices=["monte_carlo", "deterministic"])
    i.add_argument("--exclude_noise", action="store_true", default=None)
    i.add_argument("--intervals", help="levels, e.g. 0.9,0.95")
    i.add_argument("--outputs", help="names, comma-separated (default: all but samples)")
    a = ap.parse_args(argv)
    c = (OipGrpcClient(a.grpc, a.token, a.timeout) if a.grpc
         else OipHttpClient(a.url, a.token, a.timeout))
    try:
        if a.command == "health":
            out = {"live": c.live(), "ready": c.ready()}
        elif a.command == "server":
            out = c.server_metadata()
        elif a.command == "metadata":
            out = c.model_metadata(a.model)
        else:
            levels = [float(x) for x in a.intervals.split(",")] if a.intervals else None
            r = c.infer(a.model, _rows(a.input), samples=a.samples, seed=a.seed, mode=a.mode,
                        exclude_noise=a.exclude_noise, interval_levels=levels,
                        outputs=a.outputs.split(",") if a.outputs else None)
            out = {"model_name": r.model_name, "model_version": r.model_version,
                   "parameters": r.parameters,
                   "outputs": {k: v.tolist() for k, v in r.outputs.items()}}
    except OipError as e:
        print(f"mcdrop-oip: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
