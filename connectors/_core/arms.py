"""Which options a request runs with: per-request toggle, A/B arm, configured default."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Mapping

from rescore_sidecar.connectors.config import Arm, ConnectorConfig, RerankOptions


@dataclasses.dataclass(frozen=True)
class Choice:
    options: RerankOptions
    arm: str | None


def bucket(key: str, salt: str = "rescore") -> float:
    """A number in [0, 1) fixed by (salt, key): the same user always lands in the same arm."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_arm(arms: tuple[Arm, ...], key: str, salt: str = "rescore") -> Arm:
    total = sum(a.weight for a in arms)
    point = bucket(key, salt) * total
    for arm in arms:
        if point < arm.weight:
            return arm
        point -= arm.weight
    return arms[-1]  # float rounding at the top edge


def resolve(config: ConnectorConfig, rerank: Any = None, ab_key: str | None = None) -> Choice:
    """Options for one request.

    `rerank`: None (arm or default), True/False (toggle the chosen options), a dict of option
    overrides (applied on top of the arm / default; `{"enabled": False}` disables), or a
    `RerankOptions`. With arms configured and an `ab_key`, the arm is chosen by hash; a control
    arm (options None) disables reranking unless the request explicitly overrides.
    """
    options, arm_name = config.default, None
    if config.arms and ab_key is not None:
        arm = choose_arm(config.arms, str(ab_key), config.ab_salt)
        arm_name = arm.name
        options = arm.options if arm.options is not None else dataclasses.replace(config.default, enabled=False)
    if rerank is None:
        return Choice(options, arm_name)
    if isinstance(rerank, bool):
        return Choice(dataclasses.replace(options, enabled=rerank), arm_name)
    if isinstance(rerank, RerankOptions):
        return Choice(rerank, arm_name)
    if isinstance(rerank, Mapping):
        overrides = dict(rerank)
        overrides.setdefault("enabled", True)
        return Choice(options.replace(overrides), arm_name)
    raise TypeError(f"rerank= must be None, a bool, a dict of options or RerankOptions, got {type(rerank).__name__}")
