"""The site's SecAgg+ mod: policy refusals come before the key exchange, and unmaskable updates never leave."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from client.admission import SITE_REFUSED
from client.secure import _as_fitres, _bounded, _unmaskable, secure_aggregation_mod
from client.site import SiteConfig
from client.sitefile import SitePolicy
from tests.conftest import with_federation
from tests.messages import server_message


def context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def setup_message(study) -> Message:
    content = RecordDict(
        {
            RECORD_KEY_CONFIGS: ConfigRecord({Key.STAGE: Stage.SETUP}),
            "config": ConfigRecord({"study": study.to_json(), "server-round": 1}),
        }
    )
    return Message(content, dst_node_id=1, message_type=MessageType.TRAIN)


def never_called(msg: Message, ctx: Context) -> Message:
    raise AssertionError("the handler must not run")


def test_site_policy_refuses_at_setup_before_any_key_or_data(study, tmp_path):
    site = SiteConfig("west", tmp_path / "no-data-needed.csv", policy=SitePolicy(tasks=["imaging"]))
    mod = secure_aggregation_mod(lambda ctx: site)
    ctx = context()
    reply = mod(setup_message(study), ctx, never_called)
    assert reply.has_error() and reply.error.code == SITE_REFUSED
    assert "west" in reply.error.reason and "task 'tabular'" in reply.error.reason
    assert not ctx.state.config_records  # no SecAgg+ state: the site never joined the key exchange


def test_a_model_over_the_sites_size_cap_is_refused_at_setup(study, tmp_path):
    site = SiteConfig("west", tmp_path / "no-data-needed.csv", policy=SitePolicy(max_training_mib=0.01))
    ctx = context()
    reply = secure_aggregation_mod(lambda ctx: site)(setup_message(study), ctx, never_called)
    assert reply.has_error() and "policy.max-training-mib = 0.01" in reply.error.reason
    assert not ctx.state.config_records


def test_plain_train_messages_pass_through(study, demo_sites):
    mod = secure_aggregation_mod(lambda ctx: demo_sites[0])
    msg = server_message(study)
    assert mod(msg, context(), lambda m, c: m) is msg


def test_an_update_outside_the_value_range_names_the_setting(study):
    study = with_federation(study, secagg_value_range=0.5)
    arrays = ArrayRecord({"w": Array(np.array([0.1, -0.9], dtype=np.float32))})
    problem = _unmaskable(arrays, study)
    assert "'w'" in problem and "0.9" in problem and "federation.secagg-value-range" in problem
    assert _unmaskable(ArrayRecord({"w": Array(np.array([0.1, 0.4], dtype=np.float32))}), study) is None


def test_a_non_finite_update_is_not_masked(study):
    arrays = ArrayRecord({"w": Array(np.array([np.nan], dtype=np.float32))})
    assert "NaN" in _unmaskable(arrays, study)


def test_the_masked_reply_follows_the_servers_tensor_order():
    # A resumed server sends its tensors in the saved file's order, which need not be the model's own.
    arrays = ArrayRecord({"b.weight": Array(np.ones((2, 3), np.float32)), "a.bias": Array(np.zeros(2, np.float32))})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 7}), "site": ConfigRecord()})
    legacy = _as_fitres(content, ["a.bias", "b.weight"], max_weight=5)
    shapes = [a.numpy().shape for a in legacy["fitres.parameters"].values()]
    assert shapes == [(2,), (2, 3)]
    assert legacy["fitres.num_examples"]["num_examples"] == 5  # the weight is capped at secagg-max-weight


@pytest.mark.parametrize(("factor", "clipped"), [(-10.0, True), (1000.0, True), (1.01, False)])
def test_a_site_clips_its_own_update_before_masking_to_the_fixed_bound(study, tmp_path, factor, clipped):
    study = with_federation(study, update_norm_bound=1.0)
    received = ArrayRecord({"w": Array(np.full(4, 0.5, np.float32))})
    trained = ArrayRecord({"w": Array(np.full(4, 0.5 * factor, np.float32))})
    sent = _bounded(trained, received, study, SiteConfig("west", tmp_path / "x.csv"))
    update = sent["w"].numpy() - 0.5
    norm = float(np.linalg.norm(update))
    assert norm == pytest.approx(1.0, rel=1e-5) if clipped else norm < 1.0
    assert np.sign(update[0]) == np.sign(factor - 1)  # scaled down, never turned around
