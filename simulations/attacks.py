"""A dishonest site for benchmarks and tests: a Flower mod that corrupts one simulated site's train replies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.app import Array, ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod

from client.site import SiteConfig
from shared.config import StudyConfig

NOISE_STD = 1.0  # the noise attack adds N(0, NOISE_STD²) to every value the site sends


def _scaled(factor: float) -> Callable[[RecordDict, np.random.Generator], None]:
    def attack(content: RecordDict, rng: np.random.Generator) -> None:
        content["arrays"] = _map(content["arrays"], lambda v: v * factor)

    return attack


def _noise(content: RecordDict, rng: np.random.Generator) -> None:
    content["arrays"] = _map(content["arrays"], lambda v: v + rng.normal(0.0, NOISE_STD, v.shape))


def _claim(content: RecordDict, rng: np.random.Generator) -> None:
    metrics = dict(content["metrics"])
    content["metrics"] = MetricRecord({**metrics, "num-examples": 10**9})


# What a dishonest site does to its honest train reply; label-flip instead trains honestly on flipped labels.
REPLY_ATTACKS = {"sign-flip-x10": _scaled(-10.0), "scale-x1000": _scaled(1000.0), "claim-1e9": _claim, "noise": _noise}
LABEL_FLIP = "label-flip"
ATTACKS = (*REPLY_ATTACKS, LABEL_FLIP)


def attack_mod(plan: dict[str, tuple[int, str]], flipped: dict[int, SiteConfig] | None = None) -> Mod:
    """A ClientApp mod: in study `name`, the site at partition `plan[name][0]` mounts attack `plan[name][1]`;
    for label-flip it trains with medfed's own handler on `flipped[partition]` (its data with labels swapped)."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        study = StudyConfig.from_json(str(msg.content["config"]["study"]))
        partition, attack = plan.get(study.name, (-1, ""))
        if int(context.node_config["partition-id"]) != partition:
            return call_next(msg, context)
        if attack == LABEL_FLIP:
            from client.handlers import handle

            return handle(msg, flipped[partition], train=True)
        reply = call_next(msg, context)
        if not reply.has_error():
            rng = np.random.default_rng([study.seed, int(msg.content["config"]["server-round"])])
            REPLY_ATTACKS[attack](reply.content, rng)
        return reply

    return mod


def flip_labels(site: SiteConfig, label: str, folder: Path) -> SiteConfig:
    """The same site, its CSV rewritten under `folder` with the two classes of binary column `label` swapped."""
    table = pd.read_csv(site.data_path)
    first, second = sorted(table[label].dropna().unique())
    table[label] = table[label].map({first: second, second: first})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{site.name}.csv"
    table.to_csv(path, index=False)
    return SiteConfig(site.name, path)


def _map(arrays: ArrayRecord, change: Callable[[np.ndarray], np.ndarray]) -> ArrayRecord:
    """Apply `change` to each floating tensor, keeping its dtype."""
    out = {}
    for key, array in arrays.items():
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating):
            values = change(values.astype(np.float64)).astype(values.dtype)
        out[key] = Array(values)
    return ArrayRecord(out)
