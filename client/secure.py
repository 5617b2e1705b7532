"""SecAgg+ at the site: Flower's secaggplus_mod around medfed's train handler, so only a masked update leaves."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import Code, FitRes, Status
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from client.admission import admit, admit_model, refusal
from client.site import SiteConfig, site_record
from shared.arrays import non_finite, scale_update, update_norm
from shared.config import StudyConfig
from shared.errors import MedfedError

log = logging.getLogger("medfed.site")


class _Declined(Exception):
    """The handler replied with an error: the protocol stops here for this site, and the error goes back as is."""

    def __init__(self, reply: Message) -> None:
        super().__init__(reply.error.reason)
        self.reply = reply


def secure_aggregation_mod(resolve_site: Callable[[Context], SiteConfig]) -> Mod:
    """A train mod running Flower's SecAgg+ client stages when the server asks for them; plain rounds pass through."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN or RECORD_KEY_CONFIGS not in msg.content.config_records:
            return call_next(msg, context)
        site = resolve_site(context)
        config = msg.content["config"]
        study = StudyConfig.from_json(str(config["study"]))
        if msg.content[RECORD_KEY_CONFIGS][Key.STAGE] == Stage.SETUP:
            try:  # refuse before the key exchange, so the others need not recover this site's masks
                admit(study, site, train=True)
                admit_model(study, site)
            except MedfedError as exc:
                log.error("%s", exc)
                return refusal(msg, site, str(exc))

        def train(fit: Message, ctx: Context) -> Message:
            received = _as_medfed(fit, config)
            reply = call_next(received, ctx)
            if not reply.has_error():  # the server cannot bound a masked update: the site bounds its own
                reply.content["arrays"] = _bounded(reply.content["arrays"], received.content["arrays"], study, site)
            problem = None if reply.has_error() else _unmaskable(reply.content["arrays"], study)
            if problem:
                log.error("site '%s': %s", site.name, problem)
                reply = refusal(fit, site, problem)
            if reply.has_error():
                raise _Declined(reply)
            fed = study.federation
            max_weight = 1 if fed.weighting == "equal" else fed.secagg_max_weight
            fitres = _as_fitres(reply.content, list(config["array-keys"]), max_weight)
            return Message(fitres, reply_to=fit)

        try:
            reply = secaggplus_mod(msg, context, train)
        except _Declined as declined:
            return Message(declined.reply.error, reply_to=msg)
        if not reply.has_error():  # the server can then name a site that drops out later in the round
            reply.content["site"] = site_record(site, msg)
        return reply

    return mod


def _as_medfed(fit: Message, config: ConfigRecord) -> Message:
    """The protocol's positional FitIns as the named arrays and round config medfed's handler reads."""
    positional = fit.content["fitins.parameters"].values()  # legacy Arrays: bytes without shape metadata
    arrays = ArrayRecord({key: Array(a.numpy()) for key, a in zip(config["array-keys"], positional, strict=False)})
    converted = copy.copy(fit)
    converted.content = RecordDict({"arrays": arrays, "config": config})
    return converted


def _as_fitres(content: RecordDict, keys: list[str], max_weight: int) -> RecordDict:
    """medfed's train reply as the FitRes the protocol masks, its tensors in the server's order (`keys`: the sum is
    positional); metrics and the site's name stay beside it."""
    examples = int(content["metrics"]["num-examples"])
    # float64: the mod scales by the site's weight and shifts by the value range before quantising; in float32
    # that arithmetic alone would cost ~1e-4 of precision on a small site's update.
    arrays = content["arrays"]
    wide = ArrayRecord({key: Array(arrays[key].numpy().astype(np.float64)) for key in keys})
    parameters = compat.arrayrecord_to_parameters(wide, keep_input=True)
    fitres = FitRes(Status(Code.OK, ""), parameters, min(examples, max_weight), {})
    out = compat.fitres_to_recorddict(fitres, keep_input=True)
    out["metrics"], out["site"] = content["metrics"], content["site"]
    return out


def _bounded(arrays: ArrayRecord, received: ArrayRecord, study: StudyConfig, site: SiteConfig) -> ArrayRecord:
    """The site's update (its model minus the global one it received) clipped to federation.update-norm-bound."""
    bound = study.federation.update_norm_bound
    norm = update_norm(arrays, received) if bound else 0.0
    if not norm > bound:  # NaN too: _unmaskable refuses it by name
        return arrays
    log.warning("site '%s': update norm %.4g above federation.update-norm-bound = %g; clipped", site.name, norm, bound)
    return scale_update(arrays, received, bound / norm)


def _unmaskable(arrays: ArrayRecord, study: StudyConfig) -> str | None:
    """Why this update cannot be masked faithfully: masking would silently clip it, or NaN would spoil the sum."""
    problem = non_finite(arrays)
    if problem:
        return f"its update is not usable: {problem}"
    limit = study.federation.secagg_value_range
    for key, array in arrays.items():
        values = array.numpy()
        if values.size and np.abs(values).max() > limit:
            return (
                f"its update has a value of {float(np.abs(values).max()):.3g} in '{key}', outside the ±{limit:g} "
                "that secure aggregation can represent; the study must raise federation.secagg-value-range"
            )
    return None
