"""The summary of a ``benchmarks/run_all.sh`` run: the figures of issues 17 and 22, met or not.

Run by hand: ``python benchmarks/summary.py bench-logs/<run>`` (``run_all.sh`` does it at the
end). It reads the benchmarks' own outputs (``<name>.txt`` in the folder) and prints one
Markdown table; a figure whose benchmark did not run, or failed, shows as "not run". Ratios are
the benchmarks' own (against a baseline in the same run).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

Row = tuple[str, str, str, str]  # figure, measured, target, verdict


def _read(folder: Path, name: str) -> str | None:
    path = folder / f"{name}.txt"
    text = path.read_text() if path.exists() else ""
    return text or None


def _verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("met" if ok else "MISSED")


def codec(folder: Path) -> list[Row]:
    text = _read(folder, "codec")
    rows = re.findall(
        r"^(draft-0[467]|2019-09|2020-12|no \$schema \(draft-07\))\s+[\d.]+\s+([\d.]+)x"
        r"\s+[\d.]+\s+([\d.]+)x",
        text or "",
        re.MULTILINE,
    )
    if not rows:
        return [("codec encode / decode vs pydantic", "not run", "≤ 3x, every draft", "not run")]
    out = []
    for what, index in (("encode", 1), ("decode", 2)):
        worst = max(rows, key=lambda row: float(row[index]))
        shown = ", ".join(
            f"{row[0].replace(' (draft-07)', '')} {float(row[index]):.2f}x" for row in rows
        )
        out.append(
            (
                f"codec {what} vs pydantic (per draft)",
                shown,
                "≤ 3x, every draft",
                _verdict(float(worst[index]) <= 3.0),
            )
        )
    return out


def _report_ratio(text: str | None, name: str) -> float | None:
    """The ratio column of ``realistic.report``'s line for contender ``name``."""
    for line in (text or "").splitlines():
        if line[:44].strip() == name:
            return float(line.split()[-1].rstrip("x"))
    return None


def publish(folder: Path) -> list[Row]:
    text = _read(folder, "publish")
    out = []
    for draft in ("2020-12", "draft-07"):
        ratio = _report_ratio(text, f"polyn pub, {draft}, 50 tasks")
        target = "≥ 1.2x" if draft == "2020-12" else "(≥ 1.2x on 2020-12)"
        out.append(
            (
                f"pub from 50 tasks vs FastStream publish(model), {draft}",
                "not run" if ratio is None else f"{ratio:.2f}x",
                target,
                _verdict(None if ratio is None else ratio >= 1.2),
            )
        )
    return out


def request(folder: Path) -> list[Row]:
    out = []
    for name, draft in (("request", "draft-07"), ("request-2020-12", "2020-12")):
        text = _read(folder, name)
        ratio = _report_ratio(text, "polyn -> polyn")  # FastStream's p50 / polyn's p50
        p50 = None if not ratio else 1 / ratio
        out.append(
            (
                f"request/reply p50 polyn↔polyn vs FastStream↔FastStream, {draft}",
                "not run" if p50 is None else f"{p50:.2f}x FastStream's p50",
                "≤ 1.3x",
                _verdict(None if p50 is None else p50 <= 1.3),
            )
        )
        raw = re.search(r"raw responder: ([\d.]+)x raw's p50", text or "")
        value = float(raw.group(1)) if raw else None
        out.append(
            (
                f"request p50 polyn requester → raw responder vs raw, {draft}",
                "not run" if value is None else f"{value:.2f}x raw's p50",
                "≤ 1.5x",
                _verdict(None if value is None else value <= 1.5),
            )
        )
    return out


def _table_row(section: str, label: str) -> list[float] | None:
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(label):
            return [float(cell.replace(",", "")) for cell in cells[1:]]
    return None


def consume(folder: Path) -> list[Row]:
    text = _read(folder, "consume") or ""
    out = []
    for draft in ("2020-12", "draft-07"):
        match = re.search(rf"### {draft} schema.*?(?=\n### |\Z)", text, re.DOTALL)
        section = match.group(0) if match else ""
        pipeline = _table_row(section, "polyn Pipeline")
        pull = _table_row(section, "polyn PullConsumer (default")
        note = "" if draft == "2020-12" else " (targets: 2020-12)"
        out += [
            (
                f"Pipeline vs FastStream batch pull, {draft}",
                "not run" if pipeline is None else f"{pipeline[2]:.2f}x",
                "≥ 1.0x" + note,
                _verdict(None if pipeline is None else pipeline[2] >= 1.0),
            ),
            (
                f"Pipeline vs raw fetch(100)+ack, {draft}",
                "not run" if pipeline is None else f"{pipeline[1]:.2f}x",
                "≥ 0.7x" + note,
                _verdict(None if pipeline is None else pipeline[1] >= 0.7),
            ),
            (
                f"PullConsumer (defaults) vs FastStream per-message pull, {draft}",
                "not run" if pull is None else f"{pull[3]:.2f}x",
                "≥ 1.5x" + note,
                _verdict(None if pull is None else pull[3] >= 1.5),
            ),
        ]
    return out


def scale(folder: Path) -> list[Row]:
    text = _read(folder, "consume-scale") or ""
    out = []
    for n in ("10", "100"):
        row = re.search(rf"^\| {n} \| ([\d,]+) \| ([\d.]+) \|", text, re.MULTILINE)
        out.append(
            (
                f"{n} PullConsumers in one App, aggregate vs N = 1",
                "not run" if row is None else f"{row.group(2)}x ({row.group(1)}/s)",
                "within 20 % (≥ 0.8x)",
                _verdict(None if row is None else float(row.group(2)) >= 0.8),
            )
        )
    backlog = re.search(
        r"^### A ([\d,]+)-event backlog.*?^([\d,]+) events/s; RSS (\d+) MB before, (\d+) MB",
        text,
        re.MULTILINE | re.DOTALL,
    )
    out.append(
        (
            "backlog drained by a Pipeline",
            "not run"
            if backlog is None
            else f"{backlog.group(1)} events at {backlog.group(2)}/s, RSS {backlog.group(3)} → "
            f"{backlog.group(4)} MB",
            "reported",
            "reported" if backlog else "not run",
        )
    )
    return out


def portal(folder: Path) -> list[Row]:
    text = _read(folder, "portal") or ""
    out = []
    for match in re.finditer(r"^schema (\S+):(.*?)(?=^schema |\Z)", text, re.MULTILINE | re.DOTALL):
        draft, body = match.group(1), match.group(2)
        found = re.search(
            r"pub\s+asyncio.*?([\d.]+)x trio \(rounds.*?CPU ([\d.]+) µs/event = ([\d.]+)x", body
        )
        threads = re.search(r"pub\s+threads.*?([\d.]+)x trio \(rounds", body)
        p50s = dict(re.findall(r"request/reply p50 from (\w+)\s+(\d+) µs", body))
        out.append(
            (
                f"portal pub from 50 asyncio tasks vs 50 trio tasks, {draft}",
                "not run"
                if found is None
                else f"{found.group(1)}x (CPU: {found.group(3)}x); threads "
                f"{threads.group(1) if threads else '?'}x",
                "≥ 0.8x",
                _verdict(None if found is None else float(found.group(1)) >= 0.8),
            )
        )
        if p50s:
            out.append(
                (
                    f"portal request p50, {draft}",
                    f"asyncio {p50s.get('asyncio', '?')} µs, trio {p50s.get('trio', '?')} µs",
                    "reported",
                    "reported",
                )
            )
    return out or [("portal pub asyncio vs trio", "not run", "≥ 0.8x", "not run")]


def schema_store(folder: Path) -> list[Row]:
    text = _read(folder, "schema-store") or ""
    rows = re.findall(
        r"^\s*(\d+)\s+([\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([\d.na]+)\s+([\d.na]+)$",
        text,
        re.MULTILINE,
    )
    if not rows:
        return [("schema store, 10,000 schemas", "not run", "< 1.5 s, < 40 MB", "not run")]
    count, start, _, extra, decode, watch = max(rows, key=lambda row: int(row[0]))
    small = min(rows, key=lambda row: int(row[0]) if int(row[0]) > 0 else 10**9)
    ok = float(start) < 1.5 and float(extra) < 40 if int(count) >= 10_000 else None
    return [
        (
            f"schema store, {int(count):,} schemas: start, memory",
            f"{float(start):.2f} s, +{float(extra):.1f} MB",
            "< 1.5 s, < 40 MB (10,000)",
            _verdict(ok),
        ),
        (
            "schema store: decode µs by store size, watch",
            f"{small[4]} µs ({int(small[0]):,}) → {decode} µs ({int(count):,}); watch {watch} ms",
            "flat",
            "reported",
        ),
    ]


SECTIONS: list[Callable[[Path], list[Row]]] = [
    codec,
    publish,
    request,
    consume,
    scale,
    portal,
    schema_store,
]


def main(folder: Path) -> None:
    rows = [row for section in SECTIONS for row in section(folder)]
    print(f"Issues 17 and 22: figures from {folder} (ratios against baselines in the same run)\n")
    print("| figure | measured | target | |")
    print("|---|---|---|---|")
    for figure, measured, target, verdict in rows:
        print(f"| {figure} | {measured} | {target} | {verdict} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python benchmarks/summary.py <log folder of run_all.sh>")
    main(Path(sys.argv[1]))
