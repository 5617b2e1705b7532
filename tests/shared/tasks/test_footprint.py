"""A study's training memory is measured on the meta device: the real model's counts, and no memory taken."""

from __future__ import annotations

import dataclasses
import resource

import pytest

from shared.config import KNOWN_TASKS, PrivacyConfig, StudyConfig
from shared.errors import ConfigError
from shared.tasks import build_model, get_task
from shared.tasks.footprint import TRAINING_COPIES, model_footprint
from tests.shared.tasks.text.pretrained import tiny_bert
from tests.shared.tasks.text.test_task import pretrained_study


def real_counts(study) -> tuple[int, int]:
    model = build_model(study)
    values = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    return values, sum(p.numel() for p in model.parameters() if p.requires_grad)


def changed(name: str, section: str, **values) -> StudyConfig:
    raw = get_task(name).demo_study().to_dict()
    raw[section].update({k.replace("_", "-"): v for k, v in values.items()})
    return StudyConfig.from_dict(raw)


@pytest.mark.parametrize("name", KNOWN_TASKS)
@pytest.mark.parametrize("mode", ["off", "local"])
def test_the_meta_size_is_the_real_models_and_dp_adds_one_gradient_per_example(name, mode):
    study = get_task(name).demo_study()
    study = dataclasses.replace(study, privacy=PrivacyConfig(mode=mode, epsilon=3.0))
    if name == "survival" and mode == "local":
        study = dataclasses.replace(study, model={**study.model, "name": "discrete"})  # Cox is refused under DP
    size = model_footprint(study)
    assert (size.parameters, size.trainable) == real_counts(study) and size.trainable > 0
    copies = TRAINING_COPIES + (study.train.batch_size if mode == "local" else 0)
    assert size.state_bytes == 4 * (size.parameters + copies * size.trainable)  # float32 throughout
    assert size.activation_bytes > 0  # every built-in model's forward runs on the meta device
    ghost = dataclasses.replace(study, privacy=dataclasses.replace(study.privacy, grad_sample_mode="ghost"))
    assert model_footprint(ghost).state_bytes == 4 * (size.parameters + TRAINING_COPIES * size.trainable)


@pytest.mark.parametrize(
    ("name", "section", "small", "large", "at_least"),
    [
        ("imaging", "data", {"image_size": 28}, {"image_size": 56}, 3.9),  # pixels x4
        ("imaging", "train", {"batch_size": 8}, {"batch_size": 16}, 2.0),
        ("text", "data", {"max_length": 64}, {"max_length": 256}, 4.0),  # attention grows with the square
    ],
)
def test_activations_grow_with_what_the_study_sets(name, section, small, large, at_least):
    less, more = (model_footprint(changed(name, section, **v)).activation_bytes for v in (small, large))
    assert more >= at_least * less


@pytest.mark.parametrize("trainable_layers", [0, 1])
def test_a_pretrained_encoder_is_sized_from_its_config_without_reading_its_weights(tmp_path, trainable_layers):
    pytest.importorskip("transformers")
    folder = tiny_bert(tmp_path / "bert")
    study = pretrained_study(folder, trainable_layers)
    size = model_footprint(study)
    assert (size.parameters, size.trainable) == real_counts(study)
    assert size.activation_bytes > 0  # its forward runs on meta, past its "is the mask all ones?" question
    (folder / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ConfigError, match="cannot be loaded here"):  # a corrupt file is named, not a deep trace
        build_model(study)
    assert model_footprint(study) == size  # sizing never opened them


def test_an_encoders_activations_grow_with_the_batch_and_its_frozen_layers_hold_none(tmp_path):
    pytest.importorskip("transformers")
    folder = tiny_bert(tmp_path / "bert", layers=4)
    frozen, tuned = (model_footprint(pretrained_study(folder, n)).activation_bytes for n in (0, 4))
    assert 0 < 3 * frozen < tuned  # a frozen layer's outputs are freed once used: only the head's input is kept
    study = pretrained_study(folder, 4)
    batches = [dataclasses.replace(study, train=dataclasses.replace(study.train, batch_size=b)) for b in (8, 16, 32)]
    small, medium, large = (model_footprint(b).activation_bytes for b in batches)
    assert large - medium == 2 * (medium - small) > 0  # a straight line in the batch: no batch escapes the count


def test_a_model_larger_than_the_machine_is_sized_without_allocating_it():
    study = get_task("tabular").demo_study()
    huge = dataclasses.replace(study, model={**study.model, "hidden": [50_000, 50_000]})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = model_footprint(huge)
    inputs = len(study.data["features"])
    assert size.parameters == (inputs + 1) * 50_000 + 50_001 * 50_000 + 50_001 * 2  # a logit per class
    assert size.training_mib > 16 * size.parameters / 2**20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024  # KiB: not the 9 GiB of weights


def test_a_batch_past_torchs_sizes_is_still_measured_and_a_model_past_them_is_refused_by_name():
    crowded = changed("imaging", "train", batch_size=10**13)  # 10^13 x 28^2 floats: more bytes than 2^63
    assert model_footprint(crowded).training_mib > 10**12  # measured from batches of 2 and 3, in a straight line
    for study in (changed("text", "data", max_length=10**10), changed("tabular", "model", hidden=[10**10, 10**10])):
        with pytest.raises(ConfigError, match="'model' is too large for a site to size its training"):
            model_footprint(study)


@pytest.mark.parametrize("name", KNOWN_TASKS)
def test_one_examples_bytes_are_what_the_loaded_data_holds_per_example(name, tmp_path):
    task = get_task(name)
    study = task.demo_study()
    data = task.load_site(task.write_demo_sites(tmp_path, 3)[0], "west", study)
    examples = sum(len(split) for split in (data.train, data.test, data.val) if split is not None)
    size = model_footprint(study)
    assert data.nbytes() == examples * size.example_bytes
    assert size.data_mib(examples) == 2 * data.nbytes() / 2**20  # the loader's peak: two copies


def test_the_data_figure_grows_with_the_image_size_a_study_asks_for():
    small, large = (model_footprint(changed("imaging", "data", image_size=s)).example_bytes for s in (64, 1024))
    assert large - 8 == 256 * (small - 8)  # pixels (x 16^2 of them), the label's 8 bytes aside
