"""Schemathesis hooks for cachegate: how to generate values of the document's custom formats.

`cachegate-cursor` is the opaque listing cursor: only a `next_cursor` the service handed out
is meaningful, so the fuzzer draws cursors of that shape (URL-safe base64, no padding, of a
SCAN position and, optionally, a newline and the last key returned) instead of arbitrary
strings, which the service rightly refuses with 400.
"""

import base64

import schemathesis
from hypothesis import strategies as st


def _encode(scan: int, after: str | None) -> str:
    text = str(scan) if after is None else f"{scan}\n{after}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


schemathesis.openapi.format(
    "cachegate-cursor",
    st.builds(
        _encode,
        st.integers(min_value=0, max_value=2**64 - 1),
        st.none() | st.text(min_size=1, max_size=64),
    ),
)
