"""Printing a stage check: one block per item, then the verdict."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from grinder.ceremony.checks import STAGES, StageResult, Status, summary_counts

WIDTH = 100


def render(result: StageResult, header: Sequence[str] = ()) -> str:
    lines = [f"GRINDER ceremony check — stage {result.stage}: {STAGES[result.stage]} (runbook 13)"]
    lines += [f"  {h}" for h in header]
    lines.append("")
    for item in result.items:
        lines.append(f"  {item.status.value:<7}{item.id:<5} {item.title}")
        wrapped = textwrap.wrap(
            item.evidence,
            width=WIDTH - 15,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines += [f"{'':15}{w}" for w in wrapped or ["-"]]
    counts = summary_counts(result.items)
    automatic = counts[Status.PASS] + counts[Status.FAIL]
    lines.append("")
    if result.passed:
        lines.append(
            f"RESULT: PASS — {counts[Status.PASS]}/{automatic} automatic checks passed; "
            f"{counts[Status.MANUAL]} item(s) for the operator to tick (MANUAL)"
        )
    else:
        names = ", ".join(f"{i.id} {i.title}" for i in result.failed)
        lines.append(
            f"RESULT: FAIL — {counts[Status.FAIL]}/{automatic} automatic checks failed: {names}"
        )
    return "\n".join(lines)


def render_json(result: StageResult, header: Sequence[str] = ()) -> str:
    return json.dumps(
        {
            "stage": result.stage,
            "title": STAGES[result.stage],
            "passed": result.passed,
            "context": list(header),
            "items": [i.as_dict() for i in result.items],
        },
        indent=2,
    )
