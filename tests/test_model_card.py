"""A model card gives the commands that trained its bundle, a resumed run's warm restart
included, from what the run recorded; and a run records its schedule's segments."""
from __future__ import annotations

import json
import os
import shutil

from scoring.params import DEFAULT_MODEL
from training.loop import learning_rate, schedule_segments
from training.model_card import write_model_card


def _checkpoint_records(folder, schedules: dict) -> None:
    os.makedirs(folder)
    for epoch, schedule in schedules.items():
        record = {"epoch": epoch, "elapsed_s": 1.0}
        if schedule is not None:
            record["schedule"] = schedule
        with open(os.path.join(folder, f"epoch-{epoch:04d}.json"), "w") as fh:
            json.dump(record, fh)


def test_a_resumed_run_records_one_segment_per_schedule(tmp_path):
    folder = str(tmp_path / "checkpoints")
    _checkpoint_records(folder, {**{e: 30 for e in range(1, 31)}, **{e: 40 for e in range(31, 41)}})
    assert schedule_segments(folder, 40) == [{"epochs": [1, 30], "schedule": 30},
                                             {"epochs": [31, 40], "schedule": 40}]
    assert schedule_segments(folder, 12) == [{"epochs": [1, 12], "schedule": 30}]


def test_checkpoints_from_before_schedules_were_recorded_make_a_segment_of_their_own(tmp_path):
    folder = str(tmp_path / "checkpoints")
    _checkpoint_records(folder, {1: None, 2: None, 3: 5, 4: 5, 5: 5})
    assert schedule_segments(folder, 5) == [{"epochs": [1, 2], "schedule": None},
                                            {"epochs": [3, 5], "schedule": 5}]


def test_the_card_gives_each_segments_command_and_the_warm_restart(tmp_path):
    folder = str(tmp_path / "bundle")
    shutil.copytree(DEFAULT_MODEL, folder)
    path = os.path.join(folder, "model.json")
    model = json.load(open(path))
    config = model["training"]["config"]
    config.update(architecture="valid", widths=[32, 80, 192], lr=0.02, class_mix=[0.24, 0.38, 0.38],
                  init="models/dense-classifier", epochs=40, windows_per_epoch=65536, batch_size=128,
                  warmup_epochs=0.25)
    model["training"]["segments"] = [{"epochs": [1, 30], "schedule": 30}, {"epochs": [31, 40], "schedule": 40}]
    json.dump(model, open(path, "w"))
    card = open(write_model_card(folder, json.load(open(os.path.join(folder, "evaluation.json"))))).read()
    options = "--architecture valid --widths 32,80,192 --lr 0.02 --class-mix 0.24,0.38,0.38"
    assert f"    python -m app.train_detector --out {folder} {options} --epochs 30\n" in card
    assert f"    python -m app.train_detector --out {folder} {options} --epochs 40 --resume\n" in card
    assert "--init" not in card  # the architecture's own classifier
    restart = learning_rate(30 * 512, 40 * 512, 128, 0.02)
    assert (f"peak learning rate 0.02 with warm-up and cosine decay over the first 30; epochs 31-40 follow a "
            f"40-epoch cosine schedule from its epoch 31 (a warm restart at {restart:.2g}, down to 0)") \
        in " ".join(card.split())


def test_a_run_without_segments_is_one_command_as_before(tmp_path):
    folder = str(tmp_path / "bundle")
    shutil.copytree(DEFAULT_MODEL, folder)
    path = os.path.join(folder, "model.json")
    model = json.load(open(path))
    model["training"].pop("segments", None)
    config = model["training"]["config"]
    config.update(init="elsewhere/classifier", epochs=20)
    json.dump(model, open(path, "w"))
    card = open(write_model_card(folder, json.load(open(os.path.join(folder, "evaluation.json"))))).read()
    lines = [line for line in card.splitlines() if line.startswith("    python -m app.train_detector")]
    assert len(lines) == 1 and lines[0].endswith("--init elsewhere/classifier")  # 20 epochs: the default
    assert "warm restart" not in card
