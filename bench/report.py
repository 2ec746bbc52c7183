"""Results of a benchmark run: sections with a table, notes, targets and raw data; printed as
they finish and written as results.md and results.json.

Side effects: prints to stdout; `write` creates the results directory and writes two files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """One target: value against limit (smaller is better unless at_least)."""

    name: str
    value: float
    limit: float
    unit: str = ""
    at_least: bool = False

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def text(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "met" if self.met else "MISSED"
        return f"{self.name}: {self.value:.3g}{self.unit} (target {sign} {self.limit:g}" \
               f"{self.unit}) {verdict}"

    def to_dict(self) -> dict[str, Any]:
        value = None if math.isnan(self.value) else self.value
        return {"name": self.name, "value": value, "limit": self.limit, "unit": self.unit,
                "at_least": self.at_least, "met": self.met}


@dataclass
class Section:
    """One measurement's outcome."""

    key: str
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.header:
            out.append("| " + " | ".join(self.header) + " |")
            out.append("|" + "|".join("---" for _ in self.header) + "|")
            out.extend("| " + " | ".join(row) + " |" for row in self.rows)
            out.append("")
        out.extend(f"- {note}" for note in self.notes)
        out.extend(f"- target: {t.text()}" for t in self.targets)
        out.extend(f"- ERROR: {e}" for e in self.errors)
        return "\n".join(out).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "header": self.header, "rows": self.rows,
                "notes": self.notes, "targets": [t.to_dict() for t in self.targets],
                "errors": self.errors, "data": self.data}


def show(section: Section) -> None:
    print()
    print(section.markdown(), flush=True)


def write(directory: Path, meta: dict[str, Any], sections: list[Section]) -> list[Path]:
    """results.json (everything) and results.md (the tables and a target summary)."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "sections": {s.key: s.to_dict() for s in sections},
           "targets": [t.to_dict() for s in sections for t in s.targets]}
    as_json = directory / "results.json"
    as_json.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n",
                       encoding="utf-8")
    lines = ["# pep-agent benchmark results", ""]
    lines.extend(f"- {k}: {v}" for k, v in meta.items())
    lines.append("")
    lines.extend(s.markdown() for s in sections)
    lines.append("## Targets")
    lines.append("")
    lines.extend(f"- {t.text()}" for s in sections for t in s.targets)
    as_md = directory / "results.md"
    as_md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [as_md, as_json]


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"
