"""SecAgg+ training rounds: Flower's SecAggPlusWorkflow driven from medfed's round loop; the server sees only sums."""

from __future__ import annotations

import math
import time

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import FitIns, FitRes, Parameters, parameters_to_ndarrays
from flwr.server import LegacyContext
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

from server import wire
from server.screening import Screened, SiteNames, screen, unanswered
from shared.arrays import mismatch, non_finite, wire_form
from shared.config import FederationConfig

STAGES = ("setup", "share-keys", "collect-masked-vectors", "unmask")
TRAINING_STAGE = STAGES.index("collect-masked-vectors")
MODULUS = 2**32  # Flower's mask modulus; the sum of every site's quantised values must stay below it


def threshold(sampled: int, fraction: float) -> int:
    """Key shares needed to unmask, out of one per sampled site: more than `fraction` of them, and at least 2."""
    return max(2, min(sampled, math.floor(fraction * sampled) + 1))


def quantization_range(sampled: int) -> int:
    """The finest quantisation whose sum over `sampled` sites cannot wrap the modulus (Flower's default is 2**22)."""
    return min(2**30, MODULUS >> math.ceil(math.log2(sampled + 1)))  # 2**30: the quantiser rounds into int32


def secure_train_round(
    grid: Grid, messages: list[Message], arrays: ArrayRecord, federation: FederationConfig, names: SiteNames
) -> Screened:
    """Run one SecAgg+ round over the sites `messages` address; the result holds one reply: the unmasked mean."""
    rnd = int(messages[0].content["config"]["server-round"])
    # Every stage message carries medfed's round config: a site refuses a study before it joins the key exchange,
    # and rebuilds named tensors from the protocol's positional ones.
    config = ConfigRecord({**messages[0].content["config"], "array-keys": list(arrays.keys())})
    staged = _StageGrid(grid, config)
    legacy = _SampledSites([m.metadata.dst_node_id for m in messages], grid)
    bare = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(bare, strategy=legacy)
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: rnd})
    context.state.array_records[MAIN_PARAMS_RECORD] = wire_form(arrays)  # the unmasked mean keeps `arrays`' types
    workflow = _SecAggPlus(
        num_shares=1.0,  # every sampled site holds a share of every other's keys: federations of hospitals are small
        reconstruction_threshold=threshold(len(messages), federation.secagg_threshold),
        max_weight=float(federation.secagg_max_weight),
        clipping_range=federation.secagg_value_range,
        quantization_range=quantization_range(len(messages)),
        timeout=federation.round_timeout,
    )
    workflow(staged, context)
    return _outcome(staged, legacy, arrays, names, federation.round_timeout)


class _SecAggPlus(SecAggPlusWorkflow):
    """Flower's workflow, except that a site which left before the key exchange ended is not counted as a dropout.

    Such a site gave nobody a key share and nobody masked with it. Flower 1.41 still lists it among the round's
    dropouts and asks the others for its key shares at the unmask stage, so every site would fail (KeyError) and
    the round halt. Forgetting it, as if never sampled, is exactly right for the protocol.
    """

    def setup_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        """Flower's setup stage, then forget the sites that refused it or did not answer."""
        proceed = super().setup_stage(grid, context, state)
        _forget_absent(state)
        return proceed

    def share_keys_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        """Flower's key-share stage, then forget the sites that did not share their keys."""
        proceed = super().share_keys_stage(grid, context, state)
        _forget_absent(state)
        return proceed


def _forget_absent(state: WorkflowState) -> None:
    active = set(state.active_node_ids)
    state.sampled_node_ids = active
    state.nid_to_neighbours = {nid: peers & active for nid, peers in state.nid_to_neighbours.items() if nid in active}


class _StageGrid:
    """The grid as the workflow sees it: medfed's fast deadline-bound exchange, with each stage's traffic kept."""

    def __init__(self, grid: Grid, config: ConfigRecord) -> None:
        self.grid, self.config = grid, config
        self.stages: list[tuple[list[Message], list[Message]]] = []
        self.seconds: list[float] = []

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        """One protocol stage: push, pull until every reply or the round timeout, remember both."""
        messages = list(messages)
        for msg in messages:
            msg.content["config"] = self.config
        started = time.perf_counter()
        replies = wire.exchange(self.grid, messages, timeout or math.inf)
        self.seconds.append(time.perf_counter() - started)
        self.stages.append((messages, replies))
        return replies


class _SampledSites(LegacyFedAvg):
    """The workflow's (legacy) strategy: it trains the sites medfed's strategy sampled and keeps the unmasked sum."""

    def __init__(self, node_ids: list[int], grid: Grid) -> None:
        super().__init__()
        self.proxies = [GridClientProxy(node_id, grid, run_id=0) for node_id in node_ids]
        self.summed: list[FitRes] = []

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """The sampled sites, each given the global model."""
        return [(proxy, FitIns(parameters, {})) for proxy in self.proxies]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list) -> tuple:
        """Keep the result: every FitRes now holds the same unmasked weighted mean of the surviving sites."""
        self.summed = [res for _, res in results]
        return results[0][1].parameters, {}


def _outcome(
    staged: _StageGrid, legacy: _SampledSites, expected: ArrayRecord, names: SiteNames, timeout: float
) -> Screened:
    out = Screened(stage_s=dict(zip(STAGES, staged.seconds, strict=False)))
    for index, (messages, replies) in enumerate(staged.stages):
        stage = STAGES[index]
        for reply in replies:
            names.check(reply)  # every protocol reply names its site, signed: the first binds the node
        screened = screen(replies, None, names) if index == TRAINING_STAGE else _errors(replies, names)
        out.site_metrics.update(screened.site_metrics)
        out.problems += [{**p, "reason": f"{p['reason']} (secure aggregation, {stage})"} for p in screened.problems]
        out.problems += unanswered(messages, replies, names, f"no reply within {timeout:.0f} s ({stage} stage)")
    if not legacy.summed:
        reached = STAGES[len(staged.stages) - 1] if staged.stages else STAGES[0]
        out.problems.append(
            {
                "site": "-",
                "event": "secure-aggregation-halted",
                "reason": f"too few sites stayed in the round to unmask its sum (halted at the {reached} stage)",
            }
        )
        return out
    mean = parameters_to_ndarrays(legacy.summed[0].parameters)
    dtypes = {key: array.numpy().dtype for key, array in expected.items()}
    aggregate = ArrayRecord({key: Array(value.astype(dtypes[key])) for key, value in zip(dtypes, mean, strict=True)})
    problem = mismatch(expected, aggregate) or non_finite(aggregate)
    if problem:
        out.problems.append({"site": "-", "event": "rejected", "reason": f"the unmasked sum: {problem}"})
        return out
    total = sum(res.num_examples for res in legacy.summed)
    reply = RecordDict({"arrays": aggregate, "metrics": MetricRecord({"num-examples": total})})
    out.accepted = [Message(reply, reply_to=staged.stages[TRAINING_STAGE][0][0])]
    out.summed = len(legacy.summed)
    return out


def _errors(replies: list[Message], names: SiteNames) -> Screened:
    """A key-exchange stage's replies carry protocol keys only: the one thing to screen is a refusal."""
    return screen([r for r in replies if r.has_error()], None, names)
