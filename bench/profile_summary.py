"""Summarise a py-spy `--format raw` profile (collapsed stacks): top functions by self and total time.

    python -m bench.profile_summary bench-out/profiles/ingest-batch.txt [--top 25] [--thread NAME]

With `py-spy record --threads`, each stack starts with the thread; the summary is per thread
and overall. Self time = samples where the function is the innermost frame.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"^(?:process \d+:)?\"?(?:thread \((0x[0-9a-f]+)\)|([^;\"]+))\"?$")


def _frame_name(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; drop the line number.
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        i = path.find(marker)
        if i >= 0:
            path = path[i + len(marker) :] if marker != "lib/python3" else "stdlib" + path[i + len(marker) + 4 :]
            break
    return f"{func} ({path})"


def summarise(path: Path, top: int = 25, thread: str | None = None) -> str:
    self_t: Counter[str] = Counter()
    total_t: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    n = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        tname = frames[0] if frames and frames[0].startswith(("thread", "process", '"')) else ""
        if tname:
            frames = frames[1:]
            if frames and frames[0].startswith("thread"):
                tname, frames = frames[0], frames[1:]
        if thread and thread not in tname:
            continue
        threads[tname] += count
        n += count
        names = [_frame_name(f) for f in frames]
        if names:
            self_t[names[-1]] += count
        for name in set(names):
            total_t[name] += count
    if not n:
        return f"{path}: no samples"
    out = [f"{path}: {n} samples"]
    out.append("threads: " + ", ".join(f"{t or 'main'} {c / n:.0%}" for t, c in threads.most_common(8)))
    out.append(f"\ntop {top} by self time:")
    out += [f"  {c / n:6.1%}  {name}" for name, c in self_t.most_common(top)]
    out.append(f"\ntop {top} by total time (inclusive):")
    out += [f"  {c / n:6.1%}  {name}" for name, c in total_t.most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--thread", help="only stacks whose thread label contains this")
    a = p.parse_args()
    print(summarise(a.profile, a.top, a.thread))


if __name__ == "__main__":
    main()
