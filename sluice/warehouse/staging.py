"""The batch as an Arrow table DuckDB can scan without copying: staging(seq, shape, body)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from sluice.log.base import Entry


def staging_table(entries: Sequence[Entry]) -> pa.Table:
    return pa.table(
        {
            "seq": pa.array([e.seq for e in entries], pa.int64()),
            "shape": pa.array([e.shape for e in entries], pa.int64()),
            # The log stores UTF-8 JSON bytes; the cast validates and reinterprets them as text.
            "body": pa.array([e.body for e in entries], pa.binary()).cast(pa.string()),
        }
    )
