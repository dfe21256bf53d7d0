"""Keep the docs honest: settings, metrics, rejection codes, CLI commands, the Drip mapping and links."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import click
import pytest

from sluice.cli import main
from sluice.metrics import Metrics
from sluice.settings import Settings
from sluice.sources.drip import mapping_table_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Files a command writes rather than a person: a link to one is fine while the generator exists.
GENERATED = {DOCS / "benchmarks.md": ROOT / "bench" / "run.py"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


# -- configuration.md ------------------------------------------------------------------------


def _default_text(value: object) -> str:
    """A default as docs/configuration.md writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        return str(value) if value.is_absolute() else f"./{value}"
    if value == "":
        return '""'
    return str(value)


def _defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for f in fields(Settings):
        monkeypatch.delenv(f"SLUICE_{f.name.upper()}", raising=False)
    return Settings()


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_configuration_documents_every_setting(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [line for line in read(DOCS / "configuration.md").splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"docs/configuration.md needs one table row for the setting {name}"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == f"`SLUICE_{name.upper()}`", f"{name}: the env var column should say SLUICE_{name.upper()}"
    expected = _default_text(getattr(_defaults(monkeypatch), name))
    assert cells[2].startswith(f"`{expected}`"), f"{name}: the documented default {cells[2]!r} is not `{expected}`"


def test_configuration_documents_serve_flags() -> None:
    text = read(DOCS / "configuration.md")
    serve = main.commands["serve"]
    for param in serve.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                assert f"`{opt}`" in text, f"docs/configuration.md does not describe `sluice serve {opt}`"


# -- connect-drip.md -------------------------------------------------------------------------


def test_connect_drip_has_the_generated_mapping_table() -> None:
    assert mapping_table_markdown() in read(DOCS / "connect-drip.md"), (
        "docs/connect-drip.md's mapping table differs from sluice.sources.drip.mapping_table_markdown(): "
        "paste its output"
    )


# -- tracking-api.md -------------------------------------------------------------------------


def test_tracking_api_lists_every_metric() -> None:
    text = read(DOCS / "tracking-api.md")
    for metric in Metrics().registry.collect():
        exposed = f"{metric.name}_total" if metric.type == "counter" else metric.name
        assert f"`{exposed}`" in text, f"docs/tracking-api.md does not list the metric {exposed}"


def _codes(path: Path) -> tuple[set[str], int]:
    """String codes passed to Rejected(reason, code) / BadRequest(message, code), and how many are f-strings."""
    codes: set[str] = set()
    formatted = 0
    for node in ast.walk(ast.parse(read(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in ("Rejected", "BadRequest") or len(node.args) < 2:
            continue
        code = node.args[1]
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            codes.add(code.value)
        elif isinstance(code, ast.JoinedStr):
            formatted += 1
    return codes, formatted


@pytest.mark.parametrize("module", ["ingest/canonical.py", "ingest/body.py", "ingest/app.py"])
def test_tracking_api_lists_every_rejection_code(module: str) -> None:
    text = read(DOCS / "tracking-api.md")
    codes, formatted = _codes(ROOT / "sluice" / module)
    for code in sorted(codes):
        assert f"`{code}`" in text, f"docs/tracking-api.md does not explain the rejection code {code} ({module})"
    if formatted:  # bad_{key} for the objects a message may carry
        for code in ("bad_properties", "bad_traits", "bad_context", "bad_integrations"):
            assert f"`{code}`" in text, f"docs/tracking-api.md does not explain the rejection code {code}"


# -- the CLI ---------------------------------------------------------------------------------


def _command_paths(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path] if path else []
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*path, name))
    return paths


def _documents(lines: list[str], path: tuple[str, ...]) -> bool:
    head = f"sluice {path[0]}"
    for line in lines:
        if not re.search(rf"{re.escape(head)}(?![\w-])", line):
            continue
        if len(path) == 1 or all(part in re.findall(r"[\w-]+", line) for part in path[1:]):
            return True
    return False


@pytest.mark.parametrize("path", _command_paths(main), ids=" ".join)
def test_every_cli_command_is_documented(path: tuple[str, ...]) -> None:
    lines = [line for f in markdown_files() for line in read(f).splitlines()]
    assert _documents(lines, path), f"`sluice {' '.join(path)}` appears in neither README.md nor docs/"


def test_destinations_add_options_are_documented() -> None:
    text = read(DOCS / "destinations.md")
    add = main.commands["destinations"].commands["add"]  # type: ignore[attr-defined]
    for param in add.params:
        if isinstance(param, click.Option) and param.name != "data_dir":  # every command's: in the README
            for opt in param.opts:
                assert f"`{opt}" in text, f"docs/destinations.md does not describe `destinations add {opt}`"


# -- links -----------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = without_code_blocks(read(path))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def _links(path: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_code_blocks(read(path)))


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    for link in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (doc.parent / target).resolve() if target else doc
        if file in GENERATED and not file.exists():
            assert GENERATED[file].exists(), f"{doc.name}: {link} is generated by a file that is gone"
            continue
        assert file.exists(), f"{doc.relative_to(ROOT)}: the link {link} points to a missing file"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"{doc.relative_to(ROOT)}: {link} names no heading of {file.name}"
