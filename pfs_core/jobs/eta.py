"""Time left of a background run, from the timestamps of its progress lines (:mod:`pfs_core.progress`).

A step of the cross-validation is one model fitted on one fold; the models take very different times (a
random forest seconds, a CNN minutes), and the loop runs every model on one fold before the next fold. A
rate over all steps so far therefore jumps whenever a fast model follows a slow one. Here:

- each completed step's duration is the time between its line and the next; steps are grouped by model
  (the ``model`` key of the line that started them; preprocessing steps form one group);
- once the cycle of models is known (the first model came round again), each step still to come is
  expected to take its model's mean duration; before that, the mean of all completed steps (``rough``);
- the step under way counts as its expected duration minus the seconds it has run (now − its line), so the
  estimate counts down between lines instead of standing still; a step that overruns counts 0 and is
  flagged (``slow_step``) rather than making the estimate jump;
- nothing is estimated before the first step is complete ("estimating…");
- :func:`smooth` blends successive estimates (time constant :data:`TAU_S`), so a new line moves the
  figure gradually.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds over which :func:`smooth` moves two thirds of the way to a new estimate.
TAU_S = 15.0
#: A step counts as slow once it has run this many times its expected duration.
SLOW_FACTOR = 1.5


@dataclass(frozen=True)
class Eta:
    """``seconds`` left in the stage; ``rough`` until every model of the cycle has finished a step;
    ``slow_step`` when the step under way has run past :data:`SLOW_FACTOR` × its expected duration."""

    seconds: float
    rough: bool = False
    slow_step: bool = False


def estimate(lines: Sequence[Mapping[str, Any]], now: float) -> Eta | None:
    """Time left in the stage of ``lines`` (the stage's progress lines, oldest first, ``done`` rising by 1).

    Args:
        lines: dicts with ``done``, ``total``, ``time`` (Unix seconds) and optionally ``model``.
        now: the current time (Unix seconds).

    Returns:
        None before the first step is complete or once the stage is done.
    """
    if not lines:
        return None
    last = lines[-1]
    done, total = int(last["done"]), int(last["total"])
    if done >= total:
        return None
    durations: dict[Any, list[float]] = {}
    for a, b in zip(lines, lines[1:], strict=False):
        if int(b["done"]) == int(a["done"]) + 1:
            durations.setdefault(a.get("model"), []).append(max(0.0, float(b["time"]) - float(a["time"])))
    if not durations:
        return None
    mean = {key: sum(values) / len(values) for key, values in durations.items()}
    overall = sum(sum(v) for v in durations.values()) / sum(len(v) for v in durations.values())
    cycle = _cycle([line.get("model") for line in lines if "done" in line])
    start = int(lines[0]["done"])

    def expected(step: int) -> float:
        if cycle is None:
            return overall
        return mean.get(cycle[(step - start) % len(cycle)], overall)

    current = mean.get(last.get("model"), overall) if cycle is not None else overall
    running = max(0.0, now - float(last["time"]))
    left = max(current - running, 0.0) + sum(expected(step) for step in range(done + 1, total))
    return Eta(seconds=left, rough=cycle is None, slow_step=running > SLOW_FACTOR * current > 0)


def _cycle(keys: Sequence[Any]) -> list[Any] | None:
    """The repeating order of ``keys`` (models of successive steps), None until the first key came round again."""
    if not keys:
        return None
    for j in range(1, len(keys)):
        if keys[j] == keys[0]:
            return list(keys[:j])
    return None


def smooth(previous: tuple[float, float] | None, new: float | None, now: float, *, tau_s: float = TAU_S) -> float | None:
    """Blend of ``previous`` = (seconds left, when) counted down to ``now`` and the ``new`` estimate.

    The weight of ``new`` is ``1 − exp(−Δt / tau_s)`` (Δt: seconds since ``previous``), so the result does not
    depend on how often the page asks. None when ``new`` is None; ``new`` itself without a usable previous value.
    """
    if new is None:
        return None
    if previous is None or not math.isfinite(previous[0]) or now <= previous[1]:
        return new
    value, at = previous
    countdown = max(value - (now - at), 0.0)
    weight = 1.0 - math.exp(-(now - at) / tau_s)
    return max(countdown + weight * (new - countdown), 0.0)
