#!/usr/bin/python3
"""Checks gRPC server reflection the way generic tools (grpcurl, grpc_cli) use
it, speaking the grpc.reflection.v1alpha protocol with raw protobuf bytes (the
reflection stubs are not packaged in Debian): list the services, then fetch
the file that defines mcdrop.v1.Inference.
  reflection_check.py HOST:PORT"""
import sys

import grpc

METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def field(number, payload):
    """A length-delimited protobuf field."""
    key = bytes([(number << 3) | 2])
    n, length = len(payload), b""
    while True:
        b = n & 0x7F
        n >>= 7
        length += bytes([b | (0x80 if n else 0)])
        if not n:
            break
    return key + length + payload


def main(target):
    channel = grpc.insecure_channel(target)
    call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
    requests = [field(7, b""), field(4, b"mcdrop.v1.Inference")]  # list_services, file_containing_symbol
    responses = list(call(iter(requests), timeout=10))
    assert len(responses) == 2, responses
    services = responses[0]
    for name in (b"mcdrop.v1.Inference", b"grpc.health.v1.Health"):
        assert name in services, f"{name} not listed: {services!r}"
    descriptor = responses[1]
    for text in (b"mcdrop/v1/inference.proto", b"PredictRequest", b"Predict"):
        assert text in descriptor, f"{text} not in the file descriptor"
    print("ok: reflection lists mcdrop.v1.Inference and grpc.health.v1.Health and serves the descriptor")


if __name__ == "__main__":
    main(sys.argv[1])
