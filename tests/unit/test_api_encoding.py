"""Output chunks encoded by hand are the bytes protobuf would write, and parse back the same."""

from __future__ import annotations

import pytest
from grpclib.encoding.proto import ProtoCodec

from jobservice.api.codec import PassThroughCodec
from jobservice.api.convert import EncodedMessage, encode_output_chunk
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import Chunk, Stream

OFFSETS = [0, 1, 127, 128, 16383, 16384, 2**32 - 1, 2**32, 2**32 + 12345, 2**63, 2**64 - 1]
DATAS = [b"", b"\x00", b"x" * 127, b"y" * 128, bytes(range(256)) * 1024, b"\xff" * (256 << 10)]
STREAM_NUMBERS = {Stream.STDOUT: pb.STREAM_STDOUT, Stream.STDERR: pb.STREAM_STDERR}


@pytest.mark.parametrize("stream", [Stream.STDOUT, Stream.STDERR])
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("data", DATAS, ids=lambda d: f"{len(d)}B")
def test_hand_encoding_parses_back_to_the_same_fields(
    stream: Stream, offset: int, data: bytes
) -> None:
    wire = encode_output_chunk(Chunk(stream, offset, data))
    parsed = pb.OutputResponse.FromString(wire)
    assert parsed.WhichOneof("event") == "chunk"
    assert parsed.chunk.stream == STREAM_NUMBERS[stream]
    assert parsed.chunk.offset == offset
    assert parsed.chunk.data == data
    # And byte for byte what protobuf itself writes, so no client can tell the difference.
    chunk = pb.OutputChunk(stream=STREAM_NUMBERS[stream], offset=offset, data=data)
    assert wire == pb.OutputResponse(chunk=chunk).SerializeToString()


def test_codec_passes_encoded_messages_through_and_encodes_the_rest() -> None:
    codec = PassThroughCodec()
    wire = encode_output_chunk(Chunk(Stream.STDERR, 2**40, b"abc"))
    assert isinstance(wire, EncodedMessage)
    assert codec.encode(wire, pb.OutputResponse) is wire
    final = pb.OutputResponse(final_status=pb.JobStatus(job_id=7))
    assert codec.encode(final, pb.OutputResponse) == ProtoCodec().encode(final, pb.OutputResponse)
    with pytest.raises(TypeError):
        codec.encode(b"plain bytes are not a message", pb.OutputResponse)
