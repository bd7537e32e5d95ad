"""Running one stage of runbook 13's ceremony against a service."""

from __future__ import annotations

from grinder.ceremony.active import stage3, stage4
from grinder.ceremony.checks import Inputs, Settings, StageResult
from grinder.ceremony.passive import stage1, stage2
from grinder.ceremony.sources import Scrape, SourceError

_STAGE_FUNCS = {1: stage1, 2: stage2, 3: stage3, 4: stage4}


def run_stage(inputs: Inputs) -> StageResult:
    if inputs.stage not in _STAGE_FUNCS:
        raise ValueError(f"stage must be one of {sorted(_STAGE_FUNCS)}, got {inputs.stage}")
    scrape: Scrape | None
    error: str | None
    try:
        scrape, error = inputs.read_metrics(), None
    except SourceError as exc:
        scrape, error = None, str(exc)
    settings = Settings(inputs, scrape)
    items = _STAGE_FUNCS[inputs.stage](inputs, scrape, error, settings)
    return StageResult(inputs.stage, tuple(items))
