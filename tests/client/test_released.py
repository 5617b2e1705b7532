"""Released updates: a study name from the server never reaches a path; the file stays inside its folder."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from client.released import ReleasedUpdates


@pytest.mark.parametrize("study", ["x/../../../somewhere/file", "a/b", "/tmp/absolute", "..", "x\\..\\y"])
def test_any_study_name_stays_inside_the_released_folder(tmp_path, study):
    folder = tmp_path / "ledgers"
    released = ReleasedUpdates(folder, "hospital-1", study)
    arrays = ArrayRecord({"w": Array(np.arange(3, dtype=np.float32))})
    released.keep(2, "start", {"train-loss": 0.5}, arrays)
    assert released.path.parent == folder / "released"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [released.path]  # no temporary left, nothing outside
    metrics, again = released.find(2, "start")
    assert metrics == {"train-loss": 0.5} and np.array_equal(again["w"].numpy(), arrays["w"].numpy())
    assert ReleasedUpdates(folder, "hospital-1", study + "-other").path != released.path
