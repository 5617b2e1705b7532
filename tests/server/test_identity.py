"""Site identity comes from the provisioned key, not from the reply: impostors and name clashes are refused."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from client.site import SiteConfig, site_record
from server.provision import provision
from server.screening import SiteNames, screen
from shared.errors import ConfigError
from shared.identity import load_public_keys

GLOBAL = ArrayRecord({"w": Array(np.zeros(3, np.float32))})
RUN = 7


def reply(node: int, site: dict) -> Message:
    ask = Message(RecordDict({"arrays": GLOBAL}), dst_node_id=node, message_type="train")
    ask.metadata.__dict__["_message_id"] = f"m{node}"
    ask.metadata.__dict__["_run_id"] = RUN
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.ones(3, np.float32))}),
            "metrics": MetricRecord({"num-examples": 10}),
            "site": ConfigRecord(site),
        }
    )
    msg = Message(content, reply_to=ask)
    msg.metadata.__dict__["_src_node_id"] = node
    return msg


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    return provision(tmp_path_factory.mktemp("fed") / "fed", ["127.0.0.1"], ["north", "south"], 9092)


def signed(fed, site: str, node: int, as_node: int | None = None) -> dict:
    """The site record `site` (holding its kit's key) sends from `node`; as if addressed to `as_node`."""
    ask = Message(RecordDict(), dst_node_id=node if as_node is None else as_node, message_type="train")
    ask.metadata.__dict__["_run_id"] = RUN
    config = SiteConfig(site, fed.site(site) / "data.csv", identity_key=fed.site(site) / f"{site}.key")
    return dict(site_record(config, ask))


def test_signed_replies_are_bound_to_their_provisioned_site(fed):
    names = SiteNames(load_public_keys(fed.server / "site-keys"))
    result = screen([reply(1, signed(fed, "north", 1)), reply(2, signed(fed, "south", 2))], GLOBAL, names)
    assert sorted(result.site_metrics) == ["north", "south"] and not result.problems


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        # the south node names itself north, with its own key
        (lambda fed: {**signed(fed, "south", 2), "name": "north"}, "names itself 'north' without that site's key"),
        # it replays north's signed claim (made for north's node 1)
        (lambda fed: signed(fed, "north", 1), "names itself 'north' without that site's key"),
        (lambda fed: {"name": "north"}, "names itself 'north' without that site's key"),
        (lambda fed: {"name": "west"}, "names itself 'west', which is not a provisioned site"),
    ],
)
def test_a_node_cannot_take_another_sites_name(fed, record, reason):
    names = SiteNames(load_public_keys(fed.server / "site-keys"))
    result = screen([reply(1, signed(fed, "north", 1)), reply(2, record(fed))], GLOBAL, names)
    assert list(result.site_metrics) == ["north"] and len(result.accepted) == 1
    assert result.problems == [{"site": result.problems[0]["site"], "event": "rejected", "reason": f"node 2 {reason}"}]
    assert result.problems[0]["site"].startswith("node-2")  # recorded under its node, never as north


def test_two_nodes_holding_one_sites_key_are_refused_and_recorded(fed):
    """The same kit started twice: the second node is refused, and north's aggregate holds one update."""
    names = SiteNames(load_public_keys(fed.server / "site-keys"))
    result = screen([reply(1, signed(fed, "north", 1)), reply(2, signed(fed, "north", 2))], GLOBAL, names)
    assert len(result.accepted) == 1
    assert result.problems[0]["reason"] == "node 2 names itself 'north', which node 1 already is"


def test_in_simulation_the_first_node_owns_a_name():
    names = SiteNames()
    result = screen([reply(1, {"name": "a"}), reply(2, {"name": "a"}), reply(1, {"name": "b"})], GLOBAL, names)
    assert len(result.accepted) == 1
    assert [p["reason"] for p in result.problems] == [
        "node 2 names itself 'a', which node 1 already is",
        "node 1 is site 'a' and now names itself 'b'",
    ]


def test_a_refusal_is_recorded_under_its_site_unless_another_node_is_that_site(fed):
    names = SiteNames(load_public_keys(fed.server / "site-keys"))
    screen([reply(1, signed(fed, "north", 1))], GLOBAL, names)

    def refusal(node: int, site: str) -> Message:
        ask = Message(RecordDict(), dst_node_id=node, message_type="train")
        ask.metadata.__dict__["_message_id"] = f"r{node}"
        msg = Message(Error(code=4001, reason=f"site '{site}': over its cap"), reply_to=ask)
        msg.metadata.__dict__["_src_node_id"] = node
        return msg

    result = screen([refusal(2, "south"), refusal(3, "north"), refusal(4, "west")], GLOBAL, names)
    assert [p["site"] for p in result.problems] == ["south", "node-3 (claims 'north')", "node-4 (claims 'west')"]


def test_a_damaged_or_foreign_key_in_the_server_kit_is_named_not_a_traceback(tmp_path):
    folder = tmp_path / "site-keys"
    folder.mkdir()
    (folder / "north.pub").write_text("ssh-ed25519 AAAA-truncated\n")
    with pytest.raises(ConfigError, match=r"north\.pub' is not a site's public key .*copy it again"):
        load_public_keys(folder)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (folder / "north.pub").write_bytes(
        rsa_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    with pytest.raises(ConfigError, match=r"north\.pub' holds a .*RSA.*not the elliptic-curve key"):
        load_public_keys(folder)
