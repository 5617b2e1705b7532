"""Every task's `[data]` takes the same minimum site size settings, each refused by name below its floor."""

from __future__ import annotations

import dataclasses

import pytest

from shared.config import KNOWN_TASKS
from shared.errors import ConfigError
from shared.tasks import get_task


@pytest.mark.parametrize(("key", "lowest"), [("min-rows", 1), ("min-per-class", 0)])
@pytest.mark.parametrize("name", KNOWN_TASKS)
def test_a_minimum_site_size_below_its_floor_is_refused_by_name(name, key, lowest):
    """min-per-class may be 0 (a single-class site trains, as FLamby's Switzerland does), except for survival, where
    it counts events: a site without any has an empty partial likelihood."""
    lowest = 1 if name == "survival" else lowest
    task = get_task(name)
    demo = task.demo_study()
    task.check_study(dataclasses.replace(demo, data={**demo.data, key: lowest}))
    with pytest.raises(ConfigError) as err:
        task.check_study(dataclasses.replace(demo, data={**demo.data, key: lowest - 1}))
    assert str(err.value).startswith(f"study config: 'data.{key}' must be at least {lowest}")
