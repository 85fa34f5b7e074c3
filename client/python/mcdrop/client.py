"""A small client of mcdrop-server over grpcio, taking and returning NumPy
arrays. Errors are grpc.RpcError (with .code() and .details())."""
import json

import grpc
import numpy as np
from google.protobuf import json_format

from mcdrop.v1 import inference_pb2, inference_pb2_grpc

_HEALTH = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class Prediction:
    """What Predict answered, as arrays.

    Regression: mean, variance, std, model_variance [B, D]; intervals
    {level: (lower [B, D], upper [B, D])}. Classification: probabilities
    [B, C], predicted_class [B], entropy, mutual_information,
    variation_ratio [B]. Both: samples [T, B, D] when asked, and model,
    version, task, T (samples_used), seed, compute_seconds.
    A calibrated model also gives conformal_intervals {level: (lower,
    upper)} (regression) or prediction_sets {level: [classes of row b]}
    (classification). prediction_id and ids [B] (one per row) are what
    Client.feedback takes (empty when the server keeps no predictions)."""

    def __init__(self, resp):
        self.model, self.version, self.seed = resp.model, resp.version, resp.seed
        self.task = inference_pb2.Task.Name(resp.task).lower()
        self.samples_used = resp.samples
        self.compute_seconds = resp.compute_seconds
        rows = resp.rows
        self.prediction_id = resp.prediction_id
        self.ids = [r.id for r in rows]
        self.conformal_intervals, self.prediction_sets = {}, {}
        if self.task == "regression":
            def field(name):
                return np.array([[getattr(o, name) for o in r.outputs] for r in rows])
            self.mean, self.variance = field("mean"), field("variance")
            self.std, self.model_variance = field("std"), field("model_variance")
            self.intervals = {}
            if rows and rows[0].outputs and rows[0].outputs[0].intervals:
                for k, iv in enumerate(rows[0].outputs[0].intervals):
                    lo = np.array([[o.intervals[k].lower for o in r.outputs] for r in rows])
                    hi = np.array([[o.intervals[k].upper for o in r.outputs] for r in rows])
                    self.intervals[iv.level] = (lo, hi)
            if rows and rows[0].outputs and rows[0].outputs[0].conformal_intervals:
                for k, iv in enumerate(rows[0].outputs[0].conformal_intervals):
                    lo = np.array([[o.conformal_intervals[k].lower for o in r.outputs] for r in rows])
                    hi = np.array([[o.conformal_intervals[k].upper for o in r.outputs] for r in rows])
                    self.conformal_intervals[iv.level] = (lo, hi)
        else:
            c = [r.classification for r in rows]
            self.probabilities = np.array([list(x.probabilities) for x in c])
            self.predicted_class = np.array([x.predicted_class for x in c])
            self.entropy = np.array([x.entropy for x in c])
            self.mutual_information = np.array([x.mutual_information for x in c])
            self.variation_ratio = np.array([x.variation_ratio for x in c])
            if c and c[0].prediction_sets:
                for k, ps in enumerate(c[0].prediction_sets):
                    self.prediction_sets[ps.level] = [list(x.prediction_sets[k].classes) for x in c]
        self.samples = (np.array(resp.sample_values, dtype=np.float32).reshape(tuple(resp.sample_shape))
                        if resp.sample_shape else None)


class Client:
    def __init__(self, target="localhost:50051", timeout=30.0, load_balancing=None,
                 max_message_bytes=64 << 20, tls=False, tls_ca=None, tls_cert=None, tls_key=None,
                 auth_token=None, service_config=None, keepalive_ms=0):
        """tls / tls_ca / tls_cert / tls_key: TLS (tls_ca: PEM file of the CA to
        verify the server by, else the system's roots; tls_cert and tls_key:
        the client's certificate for mutual TLS). auth_token: sent as
        "authorization: Bearer <token>" with every call. service_config: a
        gRPC service config (dict or JSON: round robin, health checking, a
        retry policy, as deploy/grpc-service-config.json); keepalive_ms:
        client pings that find a server that stopped answering."""
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if keepalive_ms:
            options += [("grpc.keepalive_time_ms", keepalive_ms),
                        ("grpc.keepalive_timeout_ms", keepalive_ms)]
        if service_config is not None:
            options.append(("grpc.service_config", service_config if isinstance(service_config, str)
                            else json.dumps(service_config)))
        elif load_balancing:
            options.append(("grpc.service_config",
                            json.dumps({"loadBalancingConfig": [{load_balancing: {}}]})))
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if tls or tls_ca or tls_cert:
            def read(path):
                with open(path, "rb") as f:
                    return f.read()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(tls_ca) if tls_ca else None,
                private_key=read(tls_key) if tls_key else None,
                certificate_chain=read(tls_cert) if tls_cert else None)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = inference_pb2_grpc.InferenceStub(self._channel)
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {auth_token}"),) if auth_token else None

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def predict(self, x, model="", version=0, samples=0, seed=0, deterministic=False,
                include_noise=True, intervals=(), return_samples=False, predictive_draws=False,
                set_levels=()):
        """x: array-like of the model's raw inputs: [B, Q] (or [Q]) rows, or
        images [B, C, H, W] (or [C, H, W]) for a model that takes them.
        predictive_draws (regression, with return_samples): the samples are
        draws y = f + N(0, 1/tau) from the predictive distribution.
        intervals: levels of the mixture intervals (and, for a calibrated
        model, of its conformal ones); set_levels: a calibrated
        classifier's prediction-set levels."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim in (1, 3):
            x = x[None]
        if x.ndim not in (2, 4):
            raise ValueError(f"inputs must be [rows, features] or [rows, C, H, W], got shape {x.shape}")
        req = inference_pb2.PredictRequest(
            model=model, version=version, shape=list(x.shape), inputs=x.ravel().tolist(),
            samples=samples, seed=seed, return_samples=return_samples,
            mode=inference_pb2.DETERMINISTIC if deterministic else inference_pb2.MONTE_CARLO,
            exclude_noise=not include_noise, interval_levels=list(intervals),
            predictive_draws=predictive_draws, set_levels=list(set_levels))
        return Prediction(self._stub.Predict(req, timeout=self._timeout, metadata=self._metadata))

    def feedback(self, model, ids, targets=None, labels=None, version=0):
        """Tells the server what was observed for earlier predictions' rows.

        ids: row ids (Prediction.ids). Regression: targets, one value per
        output of each row ([N] or [N, D]); classification: labels [N].
        Returns (accepted, results), results a list of (id, outcome,
        message) per item; an item that cannot be joined (unknown or expired
        id, another model's id, a bad target) is reported there, never
        raised."""
        if (targets is None) == (labels is None):
            raise ValueError("give targets (regression) or labels (classification)")
        items = []
        if targets is not None:
            t = np.asarray(targets, dtype=np.float64)
            t = t.reshape(len(ids), -1)
            for i, row_id in enumerate(ids):
                items.append(inference_pb2.FeedbackItem(id=row_id, targets=t[i].tolist()))
        else:
            for row_id, label in zip(ids, labels, strict=True):
                items.append(inference_pb2.FeedbackItem(id=row_id, label=int(label)))
        r = self._stub.Feedback(inference_pb2.FeedbackRequest(model=model, version=version, items=items),
                                timeout=self._timeout, metadata=self._metadata)
        return r.accepted, [(x.id, inference_pb2.FeedbackResult.Outcome.Name(x.outcome), x.message)
                            for x in r.results]

    def metadata(self, model="", version=0):
        m = self._stub.GetModelMetadata(
            inference_pb2.GetModelMetadataRequest(model=model, version=version), timeout=self._timeout,
            metadata=self._metadata)
        return json_format.MessageToDict(m, preserving_proto_field_name=True)

    def models(self):
        r = self._stub.ListModels(inference_pb2.ListModelsRequest(), timeout=self._timeout,
                                  metadata=self._metadata)
        return [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in r.models]

    def health(self, service=""):
        """grpc.health.v1 status: "SERVING", "NOT_SERVING", ... (the request
        and response are two-field messages, encoded here directly)."""
        name = service.encode()
        request = (b"\x0a" + bytes([len(name)]) + name) if name else b""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        resp = check(request, timeout=self._timeout)
        status = resp[1] if len(resp) >= 2 and resp[0] == 0x08 else 0
        return _HEALTH.get(status, "UNKNOWN")
