"""The batch as an Arrow table DuckDB can scan without copying: staging(seq, shape, body)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from sluice.log.base import Entry


def staging_table(entries: Sequence[Entry]) -> pa.Table:
    seqs, shapes, _, bodies = zip(*entries, strict=True)  # columns in one C-level pass
    return pa.table(
        {
            "seq": pa.array(seqs, pa.int64()),
            "shape": pa.array(shapes, pa.int64()),
            # The log stores UTF-8 JSON bytes; the cast validates and reinterprets them as text.
            "body": pa.array(bodies, pa.binary()).cast(pa.string()),
        }
    )
