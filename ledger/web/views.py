"""Presentation helpers for the audit view: values and reasons as safe one-line text,
event summaries, times, and the config tree's rows.

Every string that came from the ledger (values, reasons, actors, paths) reaches a page
through `visible()`: HTML-escaped, and with control, format and bidirectional
characters shown as escapes (`\\x1b`, `\\u202e`), so a reason cannot hide text,
reorder a line or carry markup. JSON for scripts keeps the values as they are (it is
JSON-escaped, never HTML).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from ledger.core.escape import escape as escape_text
from ledger.core.escape import is_hidden, visible_char
from ledger.core.value_text import literal, value_text

__all__ = ["change_line", "literal", "plain", "summary", "tree_rows", "value_text", "visible",
           "when"]

MAX_SUMMARY_CHANGES = 3
def plain(text: str) -> str:
    """`text` with hidden characters written as escapes (for JSON that a script puts
    into a page with textContent): the CLI's rule, `ledger.core.escape`."""
    return escape_text(text)


def visible(value: Any) -> Markup:
    """A value as safe HTML: escaped, control characters marked up as visible escapes."""
    text = value if isinstance(value, str) else value_text(value)
    parts: list[str] = []
    run: list[str] = []
    for ch in text:
        if is_hidden(ch):
            if run:
                parts.append(str(escape("".join(run))))
                run = []
            code = visible_char(ch)
            parts.append(f'<span class="ctl" title="hidden character U+{ord(ch):04X}">'
                         f"{escape(code)}</span>")
        else:
            run.append(ch)
    if run:
        parts.append(str(escape("".join(run))))
    return Markup("".join(parts))  # noqa: S704 - every piece was escaped above


def when(iso: str | datetime | None) -> str:
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def where(change: Mapping[str, Any]) -> str:
    doc = change.get("doc", "config")
    return change["path"] if doc == "config" else f"{doc}:{change['path']}"


def change_line(change: Mapping[str, Any]) -> str:
    """One change of an event object as `set server.port = 8080`."""
    if change["op"] == "unset":
        return f"unset {where(change)}"
    return f"set {where(change)} = {literal(change.get('value'))}"


def summary(ev: Mapping[str, Any]) -> str:
    """An event's changes on one line."""
    if ev.get("shredded"):
        return f"shredded {len(ev['shredded'])} secret value(s)"
    changes: Sequence[Mapping[str, Any]] = ev.get("changes", [])
    text = "; ".join(change_line(c) for c in changes[:MAX_SUMMARY_CHANGES])
    if len(changes) > MAX_SUMMARY_CHANGES:
        text += f"; … {len(changes) - MAX_SUMMARY_CHANGES} more"
    if ev.get("rollback_to") is not None:
        text = f"(rollback to seq {ev['rollback_to']}) {text}"
    return text or "(no changes)"


def display(ev: Mapping[str, Any]) -> dict[str, str]:
    """The timeline cells of an event as plain text (for live rows, set with
    textContent)."""
    return {"seq": str(ev["seq"]), "time": when(ev["time"]), "actor": plain(ev["actor"]),
            "source": plain(ev["source"]), "reason": plain(ev["reason"]),
            "summary": plain(summary(ev))}


def tree_rows(rows: Iterable[Mapping[str, Any]],
              path_text: Callable[[tuple[str, ...]], str]) -> list[dict[str, Any]]:
    """Leaf rows (sorted as the document holds them) with a section row before each
    new table: [{"section": True, "depth", "label"} | {"section": False, "depth",
    "label", **row}]."""
    out: list[dict[str, Any]] = []
    open_path: list[str] = []
    for row in rows:
        keys = list(row["keys"])
        parents = keys[:-1]
        common = 0
        while common < min(len(open_path), len(parents)) and open_path[common] == parents[common]:
            common += 1
        for depth in range(common, len(parents)):
            out.append({"section": True, "depth": depth, "label": parents[depth],
                        "path": path_text(tuple(parents[: depth + 1]))})
        open_path = parents
        out.append({"section": False, "depth": len(parents), "label": keys[-1], **row})
    return out
