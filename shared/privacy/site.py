"""Local DP-SGD at a site, one round at a time: plan the noise, check the budget, make private, commit."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from opacus import PrivacyEngine
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from shared.config import PrivacyConfig, StudyConfig
from shared.errors import ConfigError, PolicyError
from shared.privacy.accounting import BudgetError, Entry, check_work, epsilon, plan_noise
from shared.privacy.budget import history, lifetime_delta, lifetime_spent
from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import Journal, LedgerError, LedgerFiles, verify

# Opacus warns at every PrivacyEngine that its "secure RNG" (torchcsprng) is off. medfed draws each round's noise and
# sampling from a generator seeded with OS entropy instead (make_private; README, "Randomness"), so in medfed's
# processes that one warning is silenced, and nothing else.
warnings.filterwarnings("ignore", message=r"Secure RNG turned off", category=UserWarning, module=r"opacus\.")

# Layers ExpandedWeights computes per-sample gradients for (torch.nn.utils._expanded_weights).
EW_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Embedding,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def dp_compatible(model: nn.Module) -> nn.Module:
    """Swap layers Opacus cannot train (BatchNorm -> GroupNorm); name any layer still unsupported."""
    if ModuleValidator.validate(model, strict=False):
        model = ModuleValidator.fix(model)
    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise ConfigError("model", "cannot be trained with DP-SGD: " + "; ".join(str(p) for p in problems[:3]))
    return model


# Measured on the 2-core CPU (BENCHMARKS.md): ghost clipping overtakes ExpandedWeights from batches of ~512.
GHOST_FROM_BATCH_ON_CPU = 512
# ExpandedWeights and hooks hold every sample's gradient of an embedding table (batch x table); ghost clipping never
# does, but at small batches it is the slowest mode (a second backward pass, and Opacus's embedding norms loop over
# the samples: the fused multimodal model trains at 0.33-0.35x non-DP with it, 0.46-0.55x with ExpandedWeights).
# So ghost is chosen for embeddings only where those per-sample gradients would take more memory than this.
PER_SAMPLE_EMBEDDING_BYTES = 256 << 20


def grad_sample_mode(model: nn.Module, requested: str, batch_size: int) -> str:
    """'auto' picks the fastest mode measured that fits: ghost clipping where per-sample gradients of embedding tables
    would be large and for large batches on CPU, ExpandedWeights where every trainable layer has its per-sample rule,
    else hooks (functorch fallback)."""
    if requested != "auto":
        return requested
    if batch_size * _embedding_bytes(model) > PER_SAMPLE_EMBEDDING_BYTES:
        return "ghost"
    if _without_ew_rule(model):
        return "hooks"
    on_cpu = next(model.parameters()).device.type == "cpu"
    return "ghost" if on_cpu and batch_size >= GHOST_FROM_BATCH_ON_CPU else "ew"


def _trainable(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if any(p.requires_grad for p in m.parameters(recurse=False))}


def _embedding_bytes(model: nn.Module) -> int:
    """Bytes of one sample's gradient of the model's trainable embedding tables."""
    tables = [m.weight for m in _trainable(model).values() if isinstance(m, nn.Embedding)]
    return sum(w.numel() * w.element_size() for w in tables if w.requires_grad)


def _without_ew_rule(model: nn.Module) -> list[str]:
    return [f"'{name}' ({type(m).__name__})" for name, m in _trainable(model).items() if not isinstance(m, EW_LAYERS)]


def planned_round(study: StudyConfig, site: str, n_train: int) -> Entry:
    """Each round's noise multiplier, sampling rate and steps at a site of `n_train` training rows: the noise that
    spends exactly the study's ε over all its rounds."""
    privacy = study.privacy
    batches = math.ceil(n_train / study.train.batch_size)
    sample_rate = 1.0 / batches  # as Opacus derives it from the loader
    steps = study.train.local_epochs * batches
    planned = steps * study.federation.rounds
    try:
        check_work([(privacy.noise_multiplier, sample_rate, planned)], privacy.accountant)
        noise = privacy.noise_multiplier or plan_noise(
            privacy.epsilon, privacy.delta, sample_rate, planned, privacy.accountant
        )
    except BudgetError as exc:
        raise BudgetError(f"site '{site}': {exc}") from exc
    return noise, sample_rate, steps


@dataclass(frozen=True)
class Outlook:
    """What a study would spend of a site's patients' budget, as `medfed-site check --study` states it."""

    study: float  # the study's ε at this site once all its rounds are spent, at the study's δ
    spent: float  # every study's ε on this site's data so far (its lifetime), at `delta`
    after: float  # the lifetime once this study's remaining rounds are spent too
    delta: float  # the lifetime's δ
    left: int  # the study's rounds not yet run here (a resumed study has run some)


def check_lifetime(study: StudyConfig, site: str, files: LedgerFiles, caps: PrivacyCaps, n_train: int) -> Outlook:
    """Refuse (naming the site, and the round) a study whose δ is above the site's cap for `n_train` training rows,
    whose noise the site cannot plan, or whose planned rounds would take the site's lifetime ε past its cap, as its
    agent would at that round; else say what it would spend. Reads the journal, writes nothing."""
    delta_cap = caps.check_delta(site, study.privacy.delta, n_train)
    verdict = verify(files, site)
    if verdict.problem:
        raise LedgerError(f"site '{site}': {verdict.problem}")
    noise, sample_rate, steps = planned_round(study, site, n_train)
    rounds = [e for e in verdict.entries if e.get("kind") == "round"]
    left = max(0, study.federation.rounds - sum(r["study"] == study.name for r in rounds))  # a resumed study's left
    delta = lifetime_delta(rounds, delta_cap, study.privacy.delta)
    accountant = study.privacy.accountant

    def after(more: int) -> float:  # `more` rounds as one entry, as the accountant merges them: never one per round
        return lifetime_spent(rounds, delta, ((noise, sample_rate, steps * more),) if more else (), accountant)

    spent, total = lifetime_spent(rounds, delta), after(left)
    if total > caps.lifetime_cap + 1e-9:
        most, fewest = 0, left  # the most rounds that fit and the fewest that do not: each round spends more
        while fewest - most > 1:
            middle = (most + fewest) // 2
            most, fewest = (middle, fewest) if after(middle) <= caps.lifetime_cap + 1e-9 else (most, middle)
        raise BudgetError(
            f"site '{site}': this study would take the site's lifetime ε (all studies on its data) from "
            f"{spent:.3f} past its cap of {caps.lifetime_cap} at δ = {delta:.3g}: its agent "
            f"would refuse it from its round {study.federation.rounds - left + fewest} on"
        )
    planned = [(noise, sample_rate, steps * study.federation.rounds)]
    return Outlook(epsilon(planned, study.privacy.delta, accountant), spent, total, delta, left)


class SitePrivacy:
    """One site's DP-SGD for one round. Life cycle: open (plans noise) -> check_round -> make_private ->
    train -> commit. The site's journal on its own disk is the only state; a restarted process resumes from it."""

    def __init__(self, study: StudyConfig, site: str, files: LedgerFiles, caps: PrivacyCaps, n_train: int) -> None:
        privacy: PrivacyConfig = study.privacy
        privacy.check_cap(site, caps.max_epsilon)
        self.delta_cap = caps.check_delta(site, privacy.delta, n_train)
        self.site, self.study, self.privacy, self.target, self.caps = site, study.name, privacy, privacy.epsilon, caps
        self.batch_size = study.train.batch_size
        self.journal = Journal.open(files, site)
        self.noise, self.sample_rate, self.steps_per_round = planned_round(study, site, n_train)
        self._engine: PrivacyEngine | None = None
        self._mode = ""

    def check_round(self) -> float:
        """The study's ε after this round if it runs; refuse (naming the site) when it would exceed the study's
        budget or the site's lifetime cap over all studies."""
        return self._admit(self.journal, self._entry(self.steps_per_round))

    def make_private(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, loss: nn.Module):
        """Opacus-wrapped model, optimiser, Poisson-sampling loader and loss for this round's training."""
        model.train()  # Opacus validates training mode; the fused evaluation just left the model in eval mode
        self._engine = PrivacyEngine(accountant=self.privacy.accountant)
        self._mode = grad_sample_mode(model, self.privacy.grad_sample_mode, self.batch_size)
        if self._mode == "ew" and (missing := _without_ew_rule(model)):
            raise ConfigError(
                "privacy.grad-sample-mode",
                f"'ew' has no per-sample rule for layer(s) {', '.join(missing)}; use 'auto' or 'hooks'",
            )
        # Noise and Poisson sampling must be unpredictable: never derived from the (public) study seed.
        torch.seed()
        noise_rng = torch.Generator(device=next(model.parameters()).device)
        noise_rng.manual_seed(int.from_bytes(os.urandom(8), "little"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus warns about secure RNG and about the accountant on every call
            try:
                out = self._engine.make_private(
                    module=model,
                    optimizer=optimizer,
                    data_loader=loader,
                    criterion=loss,
                    noise_multiplier=self.noise,
                    max_grad_norm=self.privacy.clip_norm,
                    grad_sample_mode=self._mode,
                    poisson_sampling=True,
                    noise_generator=noise_rng,
                )
            except (NotImplementedError, ValueError, RuntimeError) as exc:
                raise ConfigError("privacy.grad-sample-mode", f"'{self._mode}' cannot train this model: {exc}") from exc
        if self._mode == "ghost":
            model, optimizer, loss, loader = out
        else:
            model, optimizer, loader = out
        return model, optimizer, loader, loss

    def empty_batch_step(self):
        """For ExpandedWeights, which cannot run an empty batch: the step still happens (noise only) and counts."""
        if self._mode != "ew":
            return None

        def step(optimizer: torch.optim.Optimizer) -> None:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.requires_grad:
                        p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            optimizer.step()

        return step

    def commit(self, rnd: int) -> float:
        """Record this round in the site's journal (before the update leaves the site); return the study's ε.
        Re-checked under the journal's lock: if another process spent meanwhile and it no longer fits, raise."""
        entry = self._entry(sum(count for _, _, count in self._engine.accountant.history))

        def record(latest: Journal) -> dict[str, Any]:
            return {
                "kind": "round",
                "study": self.study,
                "round": rnd,
                "noise-multiplier": entry[0],
                "sample-rate": entry[1],
                "steps": entry[2],
                "delta": self.privacy.delta,
                "accountant": self.privacy.accountant,
                "epsilon": self._admit(latest, entry),
                "lifetime-delta": lifetime_delta(latest.rounds(), self.delta_cap, self.privacy.delta),
            }

        return float(self.journal.append(record)["epsilon"])

    def _admit(self, journal: Journal, entry: Entry) -> float:
        """The study's ε after `entry`, or a refusal naming the site when it breaks the study's budget or the
        site's lifetime cap."""
        rounds = journal.rounds()
        mine = [r for r in rounds if r["study"] == self.study]
        if mine and (mine[0]["delta"], mine[0]["accountant"]) != (self.privacy.delta, self.privacy.accountant):
            raise PolicyError(
                f"site '{self.site}': study '{self.study}' has spent at δ = {mine[0]['delta']:g} with the "
                f"'{mine[0]['accountant']}' accountant; a study cannot change them midway; refusing"
            )
        after = epsilon([*history(mine), entry], self.privacy.delta, self.privacy.accountant)
        if after > self.target + 1e-9:
            spent = epsilon(history(mine), self.privacy.delta, self.privacy.accountant)
            first = "" if mine else " (the budget is too small for even one round)"
            raise BudgetError(
                f"site '{self.site}': privacy budget exhausted{first}: ε spent {spent:.3f}, this round "
                f"would reach {after:.3f} > {self.target} at δ = {self.privacy.delta}; refusing"
            )
        cap, delta = self.caps.lifetime_cap, lifetime_delta(rounds, self.delta_cap, self.privacy.delta)
        lifetime = lifetime_spent(rounds, delta, (entry,), self.privacy.accountant) if math.isfinite(cap) else 0.0
        if lifetime > cap + 1e-9:
            raise BudgetError(
                f"site '{self.site}': lifetime privacy budget exhausted: over all studies on this site's data "
                f"ε spent {lifetime_spent(rounds, delta):.3f}, this round would reach {lifetime:.3f} > "
                f"the site's lifetime cap of {cap} at δ = {delta:.3g}; refusing"
            )
        return after

    def _entry(self, steps: int) -> Entry:
        return (self.noise, self.sample_rate, steps)
