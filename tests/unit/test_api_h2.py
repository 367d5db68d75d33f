"""The h2 fix: receiving a DATA frame must not format its payload."""

from __future__ import annotations

from hyperframe.frame import DataFrame

import jobservice.api  # noqa: F401  (applies the fix, as every API user does)


def test_data_frame_repr_does_not_hexlify_the_payload() -> None:
    frame = DataFrame(1, data=b"\xab" * 65536)
    text = repr(frame)
    assert "<65536 bytes of data>" in text
    assert "abab" not in text
    assert len(text) < 200
