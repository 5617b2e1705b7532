"""The schedule a study on the user's own data gets when nobody tuned one: rounds x local epochs, learning rate and
batch size, per task and rows per site. The one place these defaults are chosen (README, "Defaults")."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import StudyConfig


@dataclass(frozen=True)
class Schedule:
    """FedAvg rounds x local epochs, with the local optimiser's learning rate and batch size."""

    rounds: int
    local_epochs: int
    lr: float
    batch_size: int


# Per task, (most rows per site, schedule) bands, smallest sites first; the last band has no upper bound (None).
# imaging: chosen on MedMNIST's official validation split, never its test split (BENCHMARKS.md, issue #4):
#   BreastMNIST (~200 images a site) 20 x 5, PneumoniaMNIST (~1,700 a site) 10 x 2. Few images need many passes.
# tabular, text, survival, segmentation, multimodal: the schedules their built-in studies were benchmarked with.
SCHEDULES: dict[str, list[tuple[int | None, Schedule]]] = {
    "multimodal": [(None, Schedule(8, 2, 0.01, 32))],
    "imaging": [(1000, Schedule(20, 5, 0.003, 32)), (None, Schedule(10, 2, 0.003, 32))],
    "segmentation": [(None, Schedule(5, 1, 0.003, 16))],
    "tabular": [(None, Schedule(10, 2, 0.01, 8))],
    "survival": [(None, Schedule(10, 2, 0.05, 64))],
    "text": [(None, Schedule(5, 1, 0.005, 16))],
}


def default_schedule(task: str, rows_per_site: float | None) -> Schedule:
    """The schedule for a task's sites of this many rows (images, notes); an unknown size counts as small."""
    for most, schedule in SCHEDULES[task]:
        if most is None or rows_per_site is None or rows_per_site <= most:
            return schedule
    return SCHEDULES[task][-1][1]


def schedule_sections(task: str, rows_per_site: float | None) -> dict[str, dict[str, object]]:
    """The `[federation]` and `[train]` keys of FedAvg with the task's default schedule for sites of this size."""
    schedule = default_schedule(task, rows_per_site)
    return {
        "federation": {"strategy": "fedavg", "rounds": schedule.rounds},
        "train": {"local-epochs": schedule.local_epochs, "lr": schedule.lr, "batch-size": schedule.batch_size},
    }


def with_default_schedule(study: StudyConfig, rows_per_site: float | None) -> StudyConfig:
    """The study with FedAvg and its task's default schedule for sites of `rows_per_site` rows."""
    raw = study.to_dict()
    for section, keys in schedule_sections(study.task, rows_per_site).items():
        raw[section] = {**raw[section], **keys}
    return StudyConfig.from_dict(raw)
