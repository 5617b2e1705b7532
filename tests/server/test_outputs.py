"""Study outputs: the resumable state after each round survives a restart, and only for the same study."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from server.history import History
from server.outputs import StudyOutputs
from server.strategies import build_strategy, restore_strategy_state, strategy_state
from shared.config import FederationConfig
from shared.errors import ConfigError


def test_state_round_trips_model_strategy_moments_and_history(tmp_path, study):
    outputs = StudyOutputs(tmp_path / "run")
    outputs.write_study(study)
    arrays = ArrayRecord({"w": Array(np.arange(6, dtype=np.float32).reshape(2, 3))})
    strategy = build_strategy(FederationConfig(strategy="fedadam"))
    strategy.m_t, strategy.v_t = {"w": np.full((2, 3), 0.5)}, {"w": np.full((2, 3), 0.25)}
    history = History()
    history.add_metrics(1, "train", {"a": {"num-examples": 3, "train-loss": 0.7}}, FederationConfig())
    outputs.save_state(1, arrays, strategy_state(strategy), history)
    outputs.save_state(2, arrays, strategy_state(strategy), history)
    saved = outputs.load_state(study)
    assert saved.round == 2 and np.array_equal(saved.arrays["w"].numpy(), arrays["w"].numpy())
    assert saved.history.rows == history.rows
    fresh = build_strategy(FederationConfig(strategy="fedadam"))
    restore_strategy_state(fresh, saved.strategy)
    assert np.array_equal(fresh.m_t["w"], strategy.m_t["w"]) and np.array_equal(fresh.v_t["w"], strategy.v_t["w"])
    assert len(list((tmp_path / "run" / "checkpoints").glob("state-*"))) == 1  # older states are removed


def test_no_state_means_a_fresh_start_and_another_study_is_refused(tmp_path, study):
    outputs = StudyOutputs(tmp_path / "run")
    assert outputs.load_state(study) is None
    outputs.write_study(study)
    outputs.save_state(1, ArrayRecord({"w": Array(np.zeros(2, dtype=np.float32))}), {}, History())
    with pytest.raises(ConfigError, match="another study"):
        outputs.load_state(dataclasses.replace(study, seed=study.seed + 1))
