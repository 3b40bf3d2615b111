"""A run's [decoding] rule: built from the config, calibrated once when the rule needs it (the values kept with
the partial work, so a resumed run decodes as it began), and the share of positions it records."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from compute.core.artifact.records import ExampleScores
from compute.core.config import RunConfig
from compute.core.partial import PartialWork
from compute.core.rules import Rule
from compute.core.statistics import SIDE_NAMES
from compute.engine.decoding import decode_together
from compute.engine.log import log
from compute.engine.planning import Planned, make_batches
from compute.engine.runner import shared_prefixes
from compute.engine.sides import Side


def decoding_rule(config: RunConfig, sides: dict[str, Side], planned: list[Planned], work: PartialWork) -> Rule | None:
    """The [decoding] rule with its parameters; a rule with a calibration gets the values the finished batches were
    decoded with (a resumed run), or calibrates them on `planned` (every example of the run)."""
    if config.decoding is None:
        return None
    rule = Rule(config.decoding.rule, dict(config.decoding.params))
    calibration = rule.spec.calibration
    if calibration is None:
        return rule
    recorded = {name: work.recorded(f"decoding_{name}") for name in calibration.adds}
    if all(value is not None for value in recorded.values()):
        return rule.with_params(**{name: float(value) for name, value in recorded.items()})
    alone = Rule(calibration.alone(rule.params))
    prefixes = shared_prefixes(config, sides, planned)
    by_index = {p.example.index: p for p in planned}
    js = []
    batches = make_batches(list(by_index), by_index, config)
    for batch in tqdm(batches, desc=f"calibrate ({alone.name} alone)", unit="batch"):
        contexts = {name: [by_index[i].contexts[name] for i in batch] for name in SIDE_NAMES}
        decoded = decode_together(sides, contexts, alone, config.max_new_tokens, config.stop, prefixes, with_js=True)
        js += [d.js for d in decoded]
    added, line = calibration.compute(rule.params, js)
    log(line)
    return rule.with_params(**added)


def decoding_share(rule: Rule, examples: list[ExampleScores]) -> float:
    """The share of positions whose source is the one the rule counts (the nudging or inserted side, ...)."""
    sources = np.concatenate([e.source for e in examples] or [np.zeros(0, dtype=np.int8)])
    return float(np.mean(sources == rule.counted_side)) if len(sources) else float("nan")
