"""The privacy ledger a site owns: its accountant history for one study, on its own disk, across restarts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import MedfedError
from shared.privacy.accounting import Entry, epsilon, merge

FORMAT = "medfed-privacy-ledger/1"


class LedgerError(MedfedError):
    """A ledger file cannot be trusted (corrupt, foreign, another study's); training is refused, the file kept."""


def ledger_path(folder: Path, site: str, study: str) -> Path:
    """Where a site keeps its ledger for a study."""
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]", "_", s)  # noqa: E731
    return Path(folder) / f"{safe(site)}__{safe(study)}.json"


@dataclass
class PrivacyLedger:
    """Accountant history plus ε after each round with timestamps; every write is atomic and checksummed."""

    path: Path
    site: str
    study: str
    accountant: str
    delta: float
    history: list[Entry] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, site: str, study: str, accountant: str, delta: float) -> PrivacyLedger:
        """Resume the ledger at `path`, or start an empty one; anything untrustworthy raises, nothing is reset."""
        if not path.exists():
            return cls(path, site, study, accountant, delta)
        body = _read(path, site)
        ledger = cls(
            path,
            body["site"],
            body["study"],
            body["accountant"],
            body["delta"],
            [tuple(e) for e in body["history"]],
            body["rounds"],
        )
        for name, want in (("site", site), ("study", study), ("accountant", accountant), ("delta", delta)):
            if getattr(ledger, name) != want:
                raise LedgerError(
                    f"site '{site}': ledger {path} belongs to {name} '{getattr(ledger, name)}', "
                    f"not '{want}'; refusing to train (the file is left untouched)"
                )
        return ledger

    @property
    def spent(self) -> float:
        """ε spent so far."""
        return epsilon(self.history, self.delta, self.accountant)

    def epsilon_with(self, entry: Entry) -> float:
        """ε the site would have spent after one more round of `entry`."""
        return epsilon([*self.history, entry], self.delta, self.accountant)

    def record(self, rnd: int, entry: Entry) -> float:
        """Add a finished round's steps, persist, and return the new ε."""
        self.history = merge([*self.history, entry])
        eps = self.spent
        self.rounds.append(
            {
                "round": rnd,
                "epsilon": eps,
                "steps": entry[2],
                "noise-multiplier": entry[0],
                "sample-rate": entry[1],
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        self._write()
        return eps

    def _write(self) -> None:
        body = {
            "format": FORMAT,
            "site": self.site,
            "study": self.study,
            "accountant": self.accountant,
            "delta": self.delta,
            "history": [list(e) for e in self.history],
            "rounds": self.rounds,
        }
        body["checksum"] = _checksum(body)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body, indent=2))
        os.replace(tmp, self.path)


def _read(path: Path, site: str) -> dict[str, Any]:
    def corrupt(why: str) -> LedgerError:
        return LedgerError(f"site '{site}': ledger {path} is {why}; refusing to train (the file is left untouched)")

    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt("unreadable or not JSON") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise corrupt(f"not a medfed privacy ledger (expected format {FORMAT})")
    if body.get("checksum") != _checksum({k: v for k, v in body.items() if k != "checksum"}):
        raise corrupt("corrupt (checksum mismatch)")
    return body


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
