"""grpclib's protobuf codec, plus messages that the server has already encoded by hand."""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from jobservice.api.convert import EncodedMessage

__all__ = ["PassThroughCodec"]


class PassThroughCodec(ProtoCodec):
    """Sends an `EncodedMessage` as it is; encodes and decodes everything else as ProtoCodec.

    The Output stream's chunks are encoded once, straight to wire bytes (`convert.
    encode_output_chunk`): no message objects, no second serialisation of the payload.
    """

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is EncodedMessage:
            return message
        return super().encode(message, message_type)
