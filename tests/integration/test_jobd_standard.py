"""gRPC health checking and server reflection on jobd's mTLS port, called with grpcio."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest, ServerReflectionResponse
from jobdhelp import Jobd, credentials

from jobservice.api.v1 import jobservice_pb2 as pb

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def grpcio_channel(jobd: Jobd, pki: Path, user: str) -> grpc.Channel:
    """A channel of the standard gRPC library, with `user`'s certificate."""
    creds = credentials(pki, user)
    tls = grpc.ssl_channel_credentials(
        root_certificates=creds.ca.read_bytes(),
        private_key=creds.key.read_bytes(),
        certificate_chain=creds.cert.read_bytes(),
    )
    return grpc.secure_channel(jobd.target, tls)


def check(channel: grpc.Channel, service: str = "") -> HealthCheckResponse:
    call = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=HealthCheckRequest.SerializeToString,
        response_deserializer=HealthCheckResponse.FromString,
    )
    response: HealthCheckResponse = call(HealthCheckRequest(service=service), timeout=10)
    return response


def reflect(
    channel: grpc.Channel, *requests: ServerReflectionRequest
) -> list[ServerReflectionResponse]:
    call = channel.stream_stream(
        REFLECTION,
        request_serializer=ServerReflectionRequest.SerializeToString,
        response_deserializer=ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=10))


@pytest.fixture
def alice(shared_jobd: Jobd, pki: Path) -> Iterator[grpc.Channel]:
    with grpcio_channel(shared_jobd, pki, "alice") as channel:
        yield channel


def test_health_is_serving_for_the_server_and_the_job_service(
    alice: grpc.Channel, shared_jobd: Jobd
) -> None:
    assert check(alice).status == SERVING
    assert check(alice, "jobservice.v1.JobService").status == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        check(alice, "no.such.Service")
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    shared_jobd.wait_for_log(r"audit user=alice rpc=Health\.Check job=- result=OK")


def test_reflection_lists_and_describes_the_job_service(alice: grpc.Channel) -> None:
    listed, described = reflect(
        alice,
        ServerReflectionRequest(list_services=""),
        ServerReflectionRequest(file_containing_symbol="jobservice.v1.JobService"),
    )
    names = {service.name for service in listed.list_services_response.service}
    assert {"jobservice.v1.JobService", "grpc.health.v1.Health"} <= names
    files = [
        FileDescriptorProto.FromString(data)
        for data in described.file_descriptor_response.file_descriptor_proto
    ]
    services = {s.name: s for f in files for s in f.service if f.package == "jobservice.v1"}
    methods = {method.name for method in services["JobService"].method}
    assert methods == set(pb.DESCRIPTOR.services_by_name["JobService"].methods_by_name)
    assert {"Start", "Stop", "Status", "List", "Output"} <= methods


def test_a_certificate_of_no_policy_user_gets_nothing(shared_jobd: Jobd, pki: Path) -> None:
    with grpcio_channel(shared_jobd, pki, "mallory") as mallory:
        with pytest.raises(grpc.RpcError) as health:
            check(mallory)
        assert health.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as reflection:
            reflect(mallory, ServerReflectionRequest(list_services=""))
        assert reflection.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_health_watch_says_not_serving_when_jobd_shuts_down(jobd: Jobd, pki: Path) -> None:
    with grpcio_channel(jobd, pki, "bob") as bob:
        watch = bob.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        updates = watch(HealthCheckRequest(service=""), timeout=30)
        assert next(updates).status == SERVING
        os.kill(jobd.pid, signal.SIGTERM)
        assert next(updates).status == NOT_SERVING
    assert jobd.process.wait(20) == 0
