"""Every task has a default schedule for a user's own data, at any site size."""

from __future__ import annotations

import pytest

from shared.config import KNOWN_TASKS
from shared.tasks.schedule import SCHEDULES, default_schedule


@pytest.mark.parametrize("task", KNOWN_TASKS)
def test_every_task_has_a_schedule_for_any_size(task):
    assert task in SCHEDULES
    for rows in (None, 1, 10**6):
        schedule = default_schedule(task, rows)
        assert schedule.rounds >= 1 and schedule.local_epochs >= 1 and 0 < schedule.lr < 1
