"""Build Flower messages the way the server does, and check what a site's reply may hold."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from shared.arrays import model_arrays
from shared.assessment import RECORD, read_assessment
from shared.config import StudyConfig
from shared.tasks import build_model


def server_message(study: StudyConfig, train: bool = True, arrays: ArrayRecord | None = None) -> Message:
    """A train/evaluate instruction carrying the study and fresh global weights."""
    arrays = arrays or model_arrays(build_model(study))
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"study": study.to_json(), "server-round": 1})})
    return Message(content, dst_node_id=1, message_type=MessageType.TRAIN if train else MessageType.EVALUATE)


def assert_only_model_and_aggregates(reply: Message, study: StudyConfig) -> None:
    """A reply holds the model's own arrays, scalar metrics/counts, the site's name and, on the final evaluation, its
    assessment of bounded lists of aggregates: nothing per patient."""
    content = reply.content
    expected = model_arrays(build_model(study))
    assert set(content.array_records) <= {"arrays"}
    for record in content.array_records.values():
        assert set(record) == set(expected)
        for key, array in record.items():
            assert tuple(array.shape) == tuple(expected[key].shape)  # exactly the model's tensors, nothing else
    assert set(content.metric_records) <= {"metrics", RECORD}
    for key, value in content.metric_records["metrics"].items():
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert np.isfinite(value), key
    if RECORD in content.metric_records:  # the final assessment: intervals and counts of at least min-cell patients
        assessment = read_assessment(content.metric_records[RECORD])
        bins = np.add(assessment.get("bins-positive", []), assessment.get("bins-negative", []))
        assert (bins >= study.report.min_cell).all(), bins
    assert set(content.config_records) == {"site"}
    assert set(content.config_records["site"]) == {"name"}
