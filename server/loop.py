"""The study's round loop over any Flower strategy: sample, exchange with timeouts, screen, aggregate, save."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from server import robust, wire
from server.history import History
from server.memory import MemoryWatch, machine_gib
from server.outputs import OutputError, StudyOutputs
from server.report import ReportRefresher
from server.screening import SiteNames, screen, unanswered
from server.secure import secure_train_round
from server.setup import federated_setup
from server.strategies import build_strategy, restore_strategy_state, strategy_state
from server.summary import summary_lines
from server.tracking import Tracker
from shared.arrays import scale_update, wire_form
from shared.assessment import FINAL_FLAG
from shared.config import FederationConfig, StudyConfig
from shared.errors import ConfigError
from shared.initial import check_no_setup, starting_arrays
from shared.privacy.accounting import BudgetError
from shared.privacy.central import central_plan
from shared.tasks import get_task

log = logging.getLogger("medfed.server")
AVERAGE = "average"  # the saved state's group holding the running mean of the rounds `average-last` averages


class StudyStopped(Exception):
    """The study ended early, cleanly, for the reason given (too few sites, nobody connected)."""


@dataclass
class RoundReport:
    """What the operator sees after each round."""

    round: int
    rounds: int
    accepted: int
    sampled: int
    train: dict[str, float]
    evaluated_round: int
    evaluation: dict[str, float]
    wall_s: float
    problems: list[dict[str, str]] = field(default_factory=list)
    epsilon: dict[str, float] = field(default_factory=dict)
    sites: list[str] = field(default_factory=list)  # the sites whose updates this round received
    memory_gib: float = 0.0  # peak resident memory of the server's process tree during the round


def run_study(
    grid: Grid,
    study: StudyConfig,
    outputs: StudyOutputs,
    progress: Callable[[RoundReport], None] | None = None,
    deployed: bool = False,
    initial_file: Path | None = None,
) -> tuple[ArrayRecord, History]:
    """Run every round of the study; outputs are written after each, and a stop is recorded, not raised. The
    closing summary (status, final metrics, ε, each site's events) is logged: it ends the operator's stream.
    `initial_file` is where the submitting command found the study's `federation.initial-model`."""
    tracker = Tracker.open(study, outputs.folder)
    with MemoryWatch() as memory:
        arrays, history = _run_rounds(grid, study, outputs, progress, deployed, memory, tracker, initial_file)
    for line in summary_lines(study.name, history, outputs.folder.resolve(), get_task(study.task).headline):
        log.info(line)
    tracker.log_rows(history.rows)
    tracker.finish(history.status, outputs.folder)
    return arrays, history


def _run_rounds(
    grid: Grid,
    study: StudyConfig,
    outputs: StudyOutputs,
    progress: Callable[[RoundReport], None] | None,
    deployed: bool,
    memory: MemoryWatch,
    tracker: Tracker,
    initial_file: Path | None,
) -> tuple[ArrayRecord, History]:
    task = get_task(study.task)
    history, names = History(), SiteNames.from_environment()
    try:  # before the setup step would run (validate, submit and medfed-sim refuse such a study too)
        check_no_setup(study)
    except ConfigError as exc:
        return _stopped_before_start(outputs, study, history, StudyStopped(f"{exc.field} {exc.problem}"))
    saved_study = outputs.saved_study() if task.needs_setup(study) else None
    if saved_study is not None and task.completes(study, saved_study):
        study = saved_study  # a resume keeps its first run's setup: the model's layout and meaning stay the same
    if task.needs_setup(study):
        try:
            _wait_for_sites(grid, study.federation.min_sites, study.federation.connect_timeout)
            setup = federated_setup(grid, study, names)
            history.add_events(0, setup.problems)
            if setup.study is None:
                raise StudyStopped(setup.reason)
        except StudyStopped as stop:
            return _stopped_before_start(outputs, study, history, stop)
        study = setup.study
    task.check_study(study)
    secure = study.secure_aggregation(deployed)
    fed = study.federation
    config = {"study": study.to_json()}
    report = ReportRefresher(outputs.folder)
    progress = progress or functools.partial(_log_report, metric=task.headline[0])
    saved = outputs.load_state(study)
    if saved is not None and saved.history.status == "completed":
        log.info("study '%s' already completed; its outputs are in %s", study.name, outputs.folder)
        return saved.arrays, saved.history
    first, average = 1, None
    if saved is None:
        try:
            arrays = starting_arrays(study, initial_file)
        except ConfigError as exc:  # its initial model moved or changed since the study was checked
            return _stopped_before_start(outputs, study, history, StudyStopped(str(exc)))
    else:
        arrays, history, first = saved.arrays, saved.history, saved.round + 1
        if AVERAGE in saved.strategy:
            average = ArrayRecord({k: Array(v) for k, v in saved.strategy[AVERAGE].items()})
        tracker.skip_to(len(history.rows))
        history.status = "running"
        history.add_events(saved.round, [{"site": "-", "event": "resumed", "reason": f"after round {saved.round}"}])
        log.info("study '%s' resumes after round %d (from %s)", study.name, saved.round, outputs.folder)
    log.info("study '%s': secure aggregation (SecAgg+) %s", study.name, "on" if secure else "off")
    no_reply = f"no reply within {fed.round_timeout:.0f} s"
    try:
        outputs.write_study(study)
        n_sites = _wait_for_sites(grid, fed.min_sites, fed.connect_timeout)
        try:
            plan = central_plan(study.privacy, fed, n_sites) if study.privacy.mode.startswith("central") else None
        except BudgetError as exc:  # before any round: nothing spent
            raise StudyStopped(f"central DP: {exc}") from exc
        if plan is not None and (too_noisy := robust.central_noise_problem(plan, study.privacy, arrays, fed)):
            raise StudyStopped(too_noisy)
        strategy = build_strategy(fed, study.privacy, plan)
        if saved is not None:
            restore_strategy_state(strategy, saved.strategy)
        for rnd in range(first, fed.rounds + 1):
            started = time.perf_counter()
            # Flower's node sampling waits without end for min-sites nodes; bound that wait by connect-timeout.
            _wait_for_sites(grid, fed.min_sites, fed.connect_timeout)
            messages = _on_the_wire(strategy.configure_train(rnd, arrays, ConfigRecord(config), grid), arrays)
            if secure:
                result = secure_train_round(grid, messages, arrays, fed, names)
                problems = result.problems
            else:
                replies = wire.exchange(grid, messages, fed.round_timeout)
                result = screen(replies, arrays, names)
                problems = result.problems + unanswered(messages, replies, names, no_reply)
                problems += robust.bound_replies(result.accepted, arrays, fed, names)
            wall = time.perf_counter() - started
            peaks = memory.take()
            history.add_events(rnd, problems)
            # Weighted as aggregation weighs the sites: a site's claimed counts cannot dominate the metrics either.
            evaluation = history.add_metrics(rnd - 1, "eval", _strip(result.site_metrics, "eval-"), fed, secure)
            trained = {s: _train_only(m) for s, m in result.site_metrics.items()}
            train = history.add_metrics(rnd, "train", trained, fed, secure)
            compute = max((m.get("compute-s", 0.0) for m in result.site_metrics.values()), default=0.0)
            history.timings.append(
                {
                    "round": rnd,
                    "wall-s": wall,
                    "max-site-compute-s": compute,
                    "overhead-s": wall - compute,
                    "sampled": len(messages),
                    "accepted": result.contributors,
                    **{f"{stage}-s": seconds for stage, seconds in result.stage_s.items()},
                    **peaks,
                }
            )
            enough = result.contributors >= fed.min_sites
            spent = {site: m["dp-epsilon"] for site, m in result.site_metrics.items() if "dp-epsilon" in m}
            if plan is not None and enough:
                spent["central"] = plan.epsilon(rnd, study.privacy)
                history.add_metrics(
                    rnd,
                    "privacy",
                    {"central": {"epsilon": spent["central"], "noise-multiplier": plan.noise_multiplier}},
                    fed,
                )
            progress(
                RoundReport(
                    rnd,
                    fed.rounds,
                    result.contributors,
                    len(messages),
                    train,
                    rnd - 1,
                    evaluation,
                    wall,
                    problems,
                    spent,
                    sorted(result.site_metrics),
                    peaks["peak-total-gib"],
                )
            )
            if not deployed:
                _check_memory(rnd, peaks["peak-total-gib"], len(messages), study.simulation.memory_limit_gib)
            if not enough:
                raise StudyStopped(
                    f"round {rnd}: only {result.contributors} usable update(s), federation.min-sites is {fed.min_sites}"
                )
            aggregated, rejected = robust.aggregate(strategy, rnd, result.accepted, arrays, fed)
            if aggregated is None:
                raise StudyStopped(f"round {rnd}: the strategy produced no model")
            if rejected:
                _reject_round(rnd, rejected, history, fed.max_failed_rounds)
            else:
                arrays = aggregated
            average = _tail_average(average, arrays, rnd, fed)
            outputs.checkpoint(rnd, arrays)
            outputs.write_history(history)
            kept = {AVERAGE: {k: v.numpy() for k, v in average.items()}} if average is not None else {}
            outputs.save_state(rnd, arrays, {**strategy_state(strategy), **kept}, history)
            tracker.log_rows(history.rows)
            report.after_round()
        if average is not None:
            arrays = average
            reason = f"the released model is the mean of rounds {fed.average_from}-{fed.rounds}"
            history.add_events(fed.rounds, [{"site": "-", "event": "averaged", "reason": reason}])
        evaluated = _final_evaluation(grid, strategy, arrays, config, study, history, names, secure)
        history.status = "completed" if evaluated else "failed: final evaluation failed at every site"
    except StudyStopped as stop:
        _record_stop(study, history, stop, len(history.timings))
    except OutputError as exc:
        _record_failure(outputs, history, study, exc)
        return arrays, history
    try:
        outputs.save_model("model.safetensors", arrays, {"study": study.name, "status": history.status})
        outputs.write_history(history)
        if history.status == "completed":
            outputs.save_state(fed.rounds, arrays, {}, history)
    except OutputError as exc:
        _record_failure(outputs, history, study, exc)
    report.draw()
    return arrays, history


def _tail_average(
    average: ArrayRecord | None, arrays: ArrayRecord, rnd: int, fed: FederationConfig
) -> ArrayRecord | None:
    """The mean of the global models from round `average_from` to `rnd`, given the mean up to the round before;
    None before that round, or when `average-last` is 1."""
    if fed.average_last == 1 or rnd < fed.average_from:
        return None
    return arrays if average is None else scale_update(arrays, average, 1 / (rnd - fed.average_from + 1))


def _stopped_before_start(
    outputs: StudyOutputs, study: StudyConfig, history: History, stop: StudyStopped
) -> tuple[ArrayRecord, History]:
    """A study that stopped before its first round: its study.json and history.json say why, and no model is saved."""
    _record_stop(study, history, stop, 0)
    try:
        outputs.write_study(study)
        outputs.write_history(history)
    except OutputError as exc:
        _record_failure(outputs, history, study, exc)
    return ArrayRecord(), history


def _record_stop(study: StudyConfig, history: History, stop: StudyStopped, rnd: int) -> None:
    history.status = f"stopped: {stop}"
    history.add_events(rnd, [{"site": "-", "event": "stopped", "reason": str(stop)}])
    log.error("study '%s' stopped: %s", study.name, stop)


def _record_failure(outputs: StudyOutputs, history: History, study: StudyConfig, exc: OutputError) -> None:
    """The study's folder cannot be written: it stops, `failed`, recorded in history.json if that still fits."""
    history.status = f"failed: {exc}"
    history.add_events(len(history.timings), [{"site": "-", "event": "failed", "reason": str(exc)}])
    log.error("study '%s' failed: %s", study.name, exc)
    try:  # the failed write removed its temp file, so the small history.json often still fits
        outputs.write_history(history)
    except OutputError as again:
        log.error("study '%s': its status could not be recorded in history.json either: %s", study.name, again)


def _check_memory(rnd: int, peak_gib: float, sites: int, limit_gib: float) -> None:
    """Stop a simulation cleanly, with its measured cost, once a round's peak memory passes the limit."""
    limit = limit_gib or 0.9 * machine_gib()
    if peak_gib > limit:
        raise StudyStopped(
            f"round {rnd} peaked at {peak_gib:.1f} GiB of memory, above the limit of {limit:.1f} GiB "
            f"(simulation.memory-limit-gib; {1024 * peak_gib / max(1, sites):.0f} MiB per simulated site); "
            "lower simulation.workers or simulation.site-cache-mib, or simulate fewer sites"
        )


def _reject_round(rnd: int, reason: str, history: History, allowed: int) -> None:
    """Record a rejected aggregate (the previous model stays global); stop once more are rejected than allowed."""
    kept = f"{reason}; the round failed and the round-{rnd - 1} model is kept"
    history.add_events(rnd, [{"site": "-", "event": robust.REJECTED, "reason": kept}])
    log.warning("round %d: %s", rnd, kept)
    failed = robust.failed_rounds(history)
    if failed > allowed:
        raise StudyStopped(f"{failed} rounds' aggregates rejected, federation.max-failed-rounds is {allowed}")


def _final_evaluation(grid, strategy, arrays, config, study, history, names, secure) -> int:
    fed = study.federation
    _wait_for_sites(grid, fed.min_sites, fed.connect_timeout)
    final = ConfigRecord({**config, FINAL_FLAG: True})
    messages = _on_the_wire(strategy.configure_evaluate(fed.rounds, arrays, final, grid), arrays)
    replies = wire.exchange(grid, messages, fed.round_timeout)
    result = screen(replies, None, names)
    no_reply = f"no reply within {fed.round_timeout:.0f} s"
    history.add_events(fed.rounds, result.problems + unanswered(messages, replies, names, no_reply))
    history.add_metrics(fed.rounds, "eval", result.site_metrics, fed, secure)
    history.assessments = result.assessments
    return len(result.site_metrics)


def _on_the_wire(messages: Iterable[Message], arrays: ArrayRecord) -> list[Message]:
    """The strategy's messages, each carrying the global model in its wire form (`wire_form`); the strategy keeps its
    own copy at full precision, so its arithmetic is what it was."""
    sent = wire_form(arrays)
    out = list(messages)
    for message in out:
        message.content["arrays"] = sent
    return out


def _wait_for_sites(grid: Grid, needed: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < needed:
        if time.monotonic() > deadline:
            raise StudyStopped(
                f"only {connected} site(s) connected within {timeout:.0f} s, federation.min-sites is {needed}"
            )
        time.sleep(0.05)
    return connected


def _strip(site_metrics: dict[str, dict[str, float]], prefix: str) -> dict[str, dict[str, float]]:
    return {s: {k[len(prefix) :]: v for k, v in m.items() if k.startswith(prefix)} for s, m in site_metrics.items()}


def _train_only(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("eval-")}


def _log_report(report: RoundReport, metric: str) -> None:
    log.info(
        "round %d/%d: %d/%d sites, train loss %.4f, round-%d model %s %.3f (%.2f s)",
        report.round,
        report.rounds,
        report.accepted,
        report.sampled,
        report.train.get("train-loss", float("nan")),
        report.evaluated_round,
        metric,
        report.evaluation.get(metric, float("nan")),
        report.wall_s,
    )
    for problem in report.problems:  # refusals and dropouts, each as the server received it
        log.warning("  %s: %s: %s", problem["event"], problem["site"], problem["reason"])
