"""A site's privacy journal: append-only JSON lines, hash-chained and HMAC-sealed, fsync'd under a lock, anchored.

Each entry holds the previous entry's MAC and its own HMAC-SHA256 under the site's secret key. The anchor, kept apart
from the journal, holds the last entry's sequence number and MAC: a journal that is missing, shorter than the anchor
(a restored backup) or altered is refused until the operator runs `medfed-site ledger recover`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_bytes, fsync_path, write_all
from shared.errors import MedfedError

FORMAT = "medfed-privacy-journal/1"
LOCK_WAIT_S = 30.0  # a commit holds the lock for milliseconds; longer means a stuck process

log = logging.getLogger("medfed.site")


class LedgerError(MedfedError):
    """The site's privacy journal cannot be trusted or written: training is refused and nothing is reset."""


@dataclass(frozen=True)
class LedgerFiles:
    """Where one site's journal, its secret key and its anchor live; key and anchor apart from the journal."""

    journal: Path
    key: Path
    anchor: Path

    @classmethod
    def at(cls, ledger_dir: Path, site: str, key: Path | None = None, anchor: Path | None = None) -> LedgerFiles:
        """The site's journal in `ledger_dir`; key and anchor default to the sibling folder `<ledger-dir>-keys`."""
        folder = Path(ledger_dir)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", site)  # the site's own name, from its own config
        keys = folder.parent / f"{folder.name}-keys"
        return cls(
            folder / f"{name}.journal.jsonl",
            Path(key) if key else keys / f"{name}.key",
            Path(anchor) if anchor else keys / f"{name}.anchor.json",
        )

    @property
    def lock(self) -> Path:
        """The lock file every writer holds exclusively and every reader shares."""
        return self.journal.with_name(self.journal.name + ".lock")


@dataclass(frozen=True)
class Verdict:
    """What reading a journal found: its verified entries, what is wrong ('' if nothing), and loose ends."""

    entries: list[dict[str, Any]]
    problem: str = ""
    anchor_lags: bool = False  # the journal is one verified entry ahead: a commit stopped before its anchor
    torn: bool = False  # a partial last line: a write killed midway, whose update never left the site


class Journal:
    """One site's verified journal; every append re-reads and re-verifies it under the exclusive lock."""

    def __init__(self, files: LedgerFiles, site: str, entries: list[dict[str, Any]]) -> None:
        self.files, self.site, self.entries = files, site, entries

    @classmethod
    def open(cls, files: LedgerFiles, site: str) -> Journal:
        """The site's journal, verified against its key and anchor; an untrustworthy one raises, nothing changes."""
        with _locked(files, site, exclusive=False):
            verdict = verify(files, site)
        _refuse_if_broken(verdict, files, site)
        if verdict.anchor_lags or verdict.torn:
            with _locked(files, site, exclusive=True):
                verdict = verify(files, site)
                _refuse_if_broken(verdict, files, site)
                _tidy(files, site, verdict)
        return cls(files, site, verdict.entries)

    def rounds(self) -> list[dict[str, Any]]:
        """The DP training rounds recorded, of every study."""
        return [e for e in self.entries if e.get("kind") == "round"]

    def append(self, make: Callable[[Journal], dict[str, Any]]) -> dict[str, Any]:
        """Under the exclusive lock, `make` builds the record from the latest journal (or raises, and nothing is
        written); the sealed entry is fsync'd, then the anchor. Returns the sealed entry."""
        with _locked(self.files, self.site, exclusive=True):
            verdict = verify(self.files, self.site)
            _refuse_if_broken(verdict, self.files, self.site)
            _tidy(self.files, self.site, verdict)
            self.entries = verdict.entries
            entry = _seal(_key(self.files.key, create=True), self.site, self.entries, make(self))
            _append_line(self.files.journal, entry)
            _write_anchor(self.files.anchor, self.site, entry)
            self.entries = [*self.entries, entry]
        return entry


def verify(files: LedgerFiles, site: str) -> Verdict:
    """Read the journal and check its chain, its MACs and its anchor; changes nothing."""
    try:  # the anchor first: a commit writes the journal, then the anchor
        anchor = json.loads(files.anchor.read_text()) if files.anchor.exists() else None
        key = files.key.read_bytes().strip() if files.key.exists() else None
        raw = files.journal.read_bytes() if files.journal.exists() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Verdict([], f"its journal, key or anchor is unreadable ({type(exc).__name__})")
    if raw is None:
        trained = anchor is not None or key is not None
        return Verdict([], "its journal is missing, yet it has recorded rounds before" if trained else "")
    if key is None:
        return Verdict([], "its journal's secret key is missing: the journal cannot be verified")
    torn = bool(raw) and not raw.endswith(b"\n")
    entries: list[dict[str, Any]] = []
    for seq, line in enumerate(raw[: raw.rfind(b"\n") + 1].splitlines(), 1):
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Verdict(entries, f"entry {seq} of its journal is not readable: the journal was altered")
        if not _sealed(key, site, entries, entry, seq):
            return Verdict(entries, f"entry {seq} of its journal fails its MAC chain: the journal was altered")
        entries.append(entry)
    return _against_anchor(entries, anchor, site, torn)


def _against_anchor(entries: list[dict[str, Any]], anchor: Any, site: str, torn: bool) -> Verdict:
    if anchor is None:
        return Verdict(entries, "its anchor is missing" if entries else "", torn=torn)
    if not isinstance(anchor, dict) or anchor.get("format") != FORMAT or anchor.get("site") != site:
        return Verdict(entries, "its anchor is not this site's journal anchor", torn=torn)
    seq = anchor.get("seq")
    if not isinstance(seq, int) or seq < 1:
        return Verdict(entries, "its anchor is not this site's journal anchor", torn=torn)
    if seq > len(entries):
        return Verdict(
            entries,
            f"its journal holds {len(entries)} entries, its anchor {seq}: an older copy was restored",
            torn=torn,
        )
    if not hmac.compare_digest(entries[seq - 1]["mac"], str(anchor.get("mac"))):
        return Verdict(entries, f"entry {seq} of its journal does not match its anchor: the journal was replaced")
    if len(entries) > seq + 1:
        return Verdict(entries, f"its anchor is {len(entries) - seq} entries behind its journal", torn=torn)
    return Verdict(entries, anchor_lags=len(entries) == seq + 1, torn=torn)


def recover(files: LedgerFiles, site: str, reason: str) -> str:
    """The operator's explicit recovery: keep the old journal aside, rewrite every readable entry (round entries
    still count) into a freshly sealed chain ending with a recovery entry that holds the reason; re-anchor."""
    if not reason.strip():
        raise LedgerError(f"site '{site}': a recovery needs a reason (--reason), recorded in the journal")
    with _locked(files, site, exclusive=True):
        verdict = verify(files, site)
        if not verdict.problem:
            return f"site '{site}': the journal verifies; nothing to recover"
        readable = _readable(files.journal)
        aside = files.journal.with_name(f"{files.journal.name}.before-recovery-{time.strftime('%Y%m%dT%H%M%S')}")
        if files.journal.exists():
            os.replace(files.journal, aside)
        key = _key(files.key, create=True)
        chain: list[dict[str, Any]] = []
        for record in readable:
            chain.append(_seal(key, site, chain, {k: v for k, v in record.items() if k not in _CHAIN_FIELDS}))
        note = {
            "kind": "recovery",
            "reason": reason,
            "problem": verdict.problem,
            "verified-entries": len(verdict.entries),
            "carried-entries": len(readable),
        }
        chain.append(_seal(key, site, chain, note))
        atomic_write_bytes(files.journal, b"".join(_line(e) for e in chain), mode=0o600)
        _write_anchor(files.anchor, site, chain[-1])
    log.warning(
        "site '%s': privacy journal %s recovered by the operator (%s): %s; the old file is kept as %s",
        site,
        files.journal,
        verdict.problem,
        reason,
        aside,
    )
    return (
        f"site '{site}': {verdict.problem}; recovered: {len(readable)} readable entries carried over "
        f"({len(verdict.entries)} verified), recovery recorded with its reason, journal re-anchored"
    )


_CHAIN_FIELDS = ("seq", "prev", "site", "mac")


def _readable(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    raw = path.read_bytes()
    out = []
    for line in raw[: raw.rfind(b"\n") + 1].splitlines():
        with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError):
            if isinstance(entry := json.loads(line), dict):
                out.append(entry)
    return out


def _refuse_if_broken(verdict: Verdict, files: LedgerFiles, site: str) -> None:
    if verdict.problem:
        log.error("site '%s': privacy journal %s (key %s, anchor %s): %s", site, *_paths(files), verdict.problem)
        raise LedgerError(
            f"site '{site}': its privacy ledger cannot be trusted ({verdict.problem}); refusing to train until the "
            "site's operator checks it (`medfed-site ledger verify`, then `medfed-site ledger recover --reason`)"
        )


def _paths(files: LedgerFiles) -> tuple[Path, Path, Path]:
    return files.journal, files.key, files.anchor


def _tidy(files: LedgerFiles, site: str, verdict: Verdict) -> None:
    """Drop a torn last line and move a lagging anchor forward; call under the exclusive lock."""
    if verdict.torn:
        raw = files.journal.read_bytes()
        log.warning(
            "site '%s': privacy journal %s ends in a partial line (a write was killed midway; that update never "
            "left the site): discarding its %d bytes",
            site,
            files.journal,
            len(raw) - raw.rfind(b"\n") - 1,
        )
        os.truncate(files.journal, raw.rfind(b"\n") + 1)
        fsync_path(files.journal)
    if verdict.anchor_lags:
        log.info("site '%s': privacy journal anchor moved forward to its last entry (a commit was interrupted)", site)
        _write_anchor(files.anchor, site, verdict.entries[-1])


def _mac(key: bytes, entry: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _seal(key: bytes, site: str, chain: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **record,
        "seq": len(chain) + 1,
        "prev": chain[-1]["mac"] if chain else "",
        "site": site,
    }
    entry["mac"] = _mac(key, entry)
    return entry


def _sealed(key: bytes, site: str, chain: list[dict[str, Any]], entry: Any, seq: int) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("seq") == seq
        and entry.get("site") == site
        and entry.get("prev") == (chain[-1]["mac"] if chain else "")
        and hmac.compare_digest(str(entry.get("mac", "")), _mac(key, entry))
    )


def _key(path: Path, create: bool) -> bytes:
    """The site's secret MAC key, made (0600) on the first entry ever written."""
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, secrets.token_hex(32).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_path(path.parent)
    return path.read_bytes().strip()


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        write_all(fd, _line(entry))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_path(path.parent)


def _write_anchor(path: Path, site: str, last: dict[str, Any]) -> None:
    body = {"format": FORMAT, "site": site, "seq": last["seq"], "mac": last["mac"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(body, indent=2).encode(), mode=0o600)


@contextlib.contextmanager
def _locked(files: LedgerFiles, site: str, exclusive: bool) -> Iterator[None]:
    """Hold the journal's lock (readers share it), waiting at most LOCK_WAIT_S, then refuse naming the site."""
    if not exclusive and not files.lock.exists():
        yield  # nothing has ever been written here
        return
    files.lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.error("site '%s': privacy journal lock %s held for over %.0f s", site, files.lock, LOCK_WAIT_S)
                    raise LedgerError(
                        f"site '{site}': another process has held its privacy ledger for over {LOCK_WAIT_S:.0f} s; "
                        "refusing this round (check for a stuck medfed process at the site)"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the lock, as does the death of the process
