"""What a site does with each message: check the study, load its data, evaluate, train, reply."""

from __future__ import annotations

import logging
import resource
import time

import torch
from flwr.app import Message, MessageType, MetricRecord, RecordDict

from client.admission import admit, admit_model, refusal
from client.kept import keep
from client.released import ReleasedUpdates
from client.site import SiteConfig, load_site_data, site_record
from shared.arrays import arrays_digest, load_arrays
from shared.assessment import FINAL_FLAG, RECORD
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.errors import MedfedError, PolicyError
from shared.initial import pinned_start
from shared.tasks import SiteData, Task, build_model, get_task
from shared.training import WouldOverrun, make_loader, make_optimizer, train_epochs

log = logging.getLogger("medfed.site")


def handle(msg: Message, site: SiteConfig, train: bool) -> Message:
    """Run one train or evaluate message; any failure becomes an error reply naming the site."""
    try:
        if msg.metadata.message_type == MessageType.QUERY:
            metrics, arrays, assessment = _setup_answer(msg, site), None, {}
        else:
            metrics, arrays, assessment = _run(msg, site, train)
    except MedfedError as exc:
        log.error("%s", exc)
        return refusal(msg, site, str(exc))
    except Exception as exc:  # a bug must not leave the server waiting: reply, keep the trace local
        log.exception("site '%s' failed on a %s message", site.name, msg.metadata.message_type)
        return refusal(msg, site, f"internal error ({type(exc).__name__})")
    content = RecordDict({"metrics": MetricRecord(metrics), "site": site_record(site, msg)})
    if arrays is not None:
        content["arrays"] = arrays
    if assessment:
        content[RECORD] = MetricRecord(assessment)
    return Message(content, reply_to=msg)


def _setup_answer(msg: Message, site: SiteConfig) -> dict:
    """The site's counts for the study's federated setup step, under the same admission as an evaluation."""
    study = StudyConfig.from_json(str(msg.content["config"]["study"]))
    admit(study, site, train=False)
    if site.privacy_caps().capped:
        # Exact counts are not bounded by any ε: a site that releases its patients' data only under local DP says no.
        raise PolicyError(
            f"site '{site.name}': this site releases what its data teaches only under local DP within its ε caps, "
            "and the setup step's event-time histogram is exact; list data.cut-points in the study instead"
        )
    task = get_task(study.task)
    if not task.needs_setup(study):
        raise MedfedError(f"site '{site.name}': study '{study.name}' asks a setup question it does not need")
    return task.setup_answer(study, load_site_data(site, study))


def _run(msg: Message, site: SiteConfig, train: bool):
    started = time.perf_counter()
    config = msg.content["config"]
    study = StudyConfig.from_json(str(config["study"]))
    admit(study, site, train)  # the site's own rules first: a refused study touches no patient data
    admit_model(study, site)
    _check_pinned(msg, study, site, train)
    task = get_task(study.task)
    data = load_site_data(site, study)
    final = not train and _final(config, site)  # once per study: bounded work, aggregates only (shared.assessment)
    if train or final:  # the statistics its rows were encoded with, for the site's own predictions
        keep(site, study, data.kept)
    if train and data.sits_out:  # before any training or privacy spending; its evaluations still answer
        raise MedfedError(f"site '{site.name}' {data.sits_out}")
    device = resolve_device(site.device)
    model = build_model(study)
    try:
        load_arrays(model, msg.content["arrays"])
    except ValueError as exc:
        raise MedfedError(str(exc)) from exc
    # The received global model is scored first, so a train reply also carries its evaluation.
    metrics = _evaluate(task, study, model, data, device, prefix="eval-" if train else "")
    arrays, assessment = None, {}
    if final:
        threshold = task.threshold(study, model, data, device)
        assessment = task.assess(study, model, data, device, threshold)
        # The final model's threshold (None: the likelier class) and the task's statistics, for predict.
        keep(site, study, {"threshold": threshold, **task.final_statistics(study, model, data, device)})
    if train:
        rnd = int(config.get("server-round", 0))
        released = ReleasedUpdates(site.ledger_dir, site.name, study.name) if study.privacy.mode == "local" else None
        start = arrays_digest(msg.content["arrays"]) if released else ""
        replay = released.find(rnd, start) if released else None
        if replay is not None:  # this round's update already left the site: resend it, spending no new ε
            log.info("site '%s': resending its round-%d update of study '%s'", site.name, rnd, study.name)
            trained, arrays = replay
        else:
            proximal_mu = float(config.get("proximal-mu", 0.0))
            trained = _train(task, model, data, study, site, device, rnd, proximal_mu, started)
            arrays = task.reply_arrays(study, model, data, msg.content["arrays"])
            if released:
                released.keep(rnd, start, trained, arrays)
        metrics.update(trained)
    metrics["compute-s"] = time.perf_counter() - started
    metrics["peak-rss-mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return metrics, arrays, assessment


def _check_pinned(msg: Message, study: StudyConfig, site: SiteConfig, train: bool) -> None:
    """Refuse, before any row is read, a model other than the study's pinned initial model where the pin applies
    (every evaluation of an evaluation-only study, round 1 of one that trains on from it)."""
    rnd = int(msg.content["config"].get("server-round", 0))
    pin = pinned_start(study, rnd, train)
    if pin is None:
        return
    sent = arrays_digest(msg.content["arrays"])
    if sent != pin:
        raise PolicyError(
            f"site '{site.name}': the server sent a model whose weights have SHA-256 {sent}, not the initial model "
            f"study '{study.name}' pins ({pin}); refusing"
        )


def _final(config, site: SiteConfig) -> bool:
    """Whether the server asks for the final assessment; anything but a boolean is refused by name."""
    final = config.get(FINAL_FLAG, False)
    if not isinstance(final, bool):
        raise MedfedError(f"site '{site.name}': the server's '{FINAL_FLAG}' must be true or false")
    return final


def _train(
    task: Task,
    model,
    data: SiteData,
    study: StudyConfig,
    site: SiteConfig,
    device,
    rnd: int,
    proximal_mu: float,
    started: float,
) -> dict[str, float]:
    round_seed = study.seed * 100_003 + rnd
    loader = make_loader(data.train, study.train.batch_size, seed=round_seed)
    optimizer, loss_fn, empty_step = make_optimizer(model, study.train), task.train_loss(study, data.train), None
    privacy = None
    torch.manual_seed(round_seed)  # reproducible dropout without DP; SitePrivacy re-seeds from OS entropy
    if study.privacy.mode == "local":
        # Budget and policy are checked before any training: a refused round spends nothing.
        from shared.privacy.site import SitePrivacy  # Opacus takes seconds to import: only for private training

        privacy = SitePrivacy(study, site.name, site.ledger_files(), site.privacy_caps(), len(data.train))
        privacy.check_round()
        model, optimizer, loader, loss_fn = privacy.make_private(model, optimizer, loader, loss_fn)
        empty_step = privacy.empty_batch_step()
    limit, limited_by = site.policy.round_limit(study)
    time_left_s = limit - (time.perf_counter() - started)
    try:
        loss = train_epochs(
            model,
            loader,
            loss_fn,
            optimizer,
            study.train.local_epochs,
            device,
            proximal_mu=proximal_mu,
            empty_batch_step=empty_step,
            time_left_s=time_left_s,
        )
    except WouldOverrun as late:  # said early and by name, rather than silently missing the round
        raise MedfedError(
            f"site '{site.name}': this round would take about {limit - time_left_s + late.estimate_s:.0f} s "
            f"({study.train.local_epochs} local epoch(s), {late.batches} batches, timed over the first ones), past "
            f"{limited_by}; not training it (fewer local epochs or rows per round, a GPU, or a longer limit would fit)"
        ) from late
    out = {"num-examples": len(data.train), "train-loss": loss}
    if privacy is not None:
        out.update({"dp-epsilon": privacy.commit(rnd), "dp-noise-multiplier": privacy.noise})
    return out


def _evaluate(task: Task, study: StudyConfig, model, data: SiteData, device, prefix: str) -> dict[str, float]:
    scores = {"num-examples": len(data.test), **task.evaluate(study, model, data, device)}
    return {prefix + k: float(v) if k != "num-examples" else int(v) for k, v in scores.items()}
