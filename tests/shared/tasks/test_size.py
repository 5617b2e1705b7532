"""Every task's `[data]` takes the same minimum site size settings, each refused by name below 1."""

from __future__ import annotations

import dataclasses

import pytest

from shared.config import KNOWN_TASKS
from shared.errors import ConfigError
from shared.tasks import get_task


@pytest.mark.parametrize("key", ["min-rows", "min-per-class"])
@pytest.mark.parametrize("name", KNOWN_TASKS)
def test_a_minimum_site_size_below_one_is_refused_by_name(name, key):
    task = get_task(name)
    demo = task.demo_study()
    task.check_study(dataclasses.replace(demo, data={**demo.data, key: 1}))
    with pytest.raises(ConfigError) as err:
        task.check_study(dataclasses.replace(demo, data={**demo.data, key: 0}))
    assert str(err.value) == f"study config: 'data.{key}' must be at least 1"
