"""Training with Lightning on the small packed cohort: the saved model, resuming from last.ckpt (in-process and
after killing the real CLI), and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_NET, cli, cli_process, refused
from paindiffusion.checkpoint import PainModel
from paindiffusion.conditions import ConditionSpec
from paindiffusion.dataset import PackedData
from paindiffusion.errors import PainDiffusionError
from paindiffusion.files import MARKER
from paindiffusion.model import ModelConfig
from paindiffusion.train import TrainConfig, train

torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead (and the CPU is shared)

TINY = ModelConfig(**TINY_NET)


def tcfg(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch=4, window=32, val_every=2, val_batches=1)


def metrics(run: Path, version: int) -> list[dict]:
    with open(run / "logs" / f"version_{version}" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def ckpt_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers only


@pytest.mark.slow
def test_train_then_resume(tmp_path, packed_dir):
    out = tmp_path / "run"
    m4 = train(packed_dir, out, tcfg(4), mcfg=TINY, progress=False)
    assert m4.info["trained_steps"] == 4
    # the final model: safetensors + JSON, loadable without unpickling, conditions measured on the data
    loaded = PainModel.load(out / "model")
    assert sorted(os.listdir(out / "model")) == [MARKER, "config.json", "model.safetensors"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["info"]["trained_steps"] == 4 and loaded.info["trained_steps"] == 4
    assert config["model"]["width"] == 32 and config["model"]["depth"] == 1
    data = PackedData(packed_dir)
    want = ConditionSpec.from_data(data, calibrated=tcfg(4).calibrated, resting_faces=TINY.resting_face).to_dict()
    assert config["conditions"] == json.loads(json.dumps(want))  # exactly the statistics of the training split
    assert config["conditions"]["stimulus_mean"] == pytest.approx(data.stats["stimulus_mean"])
    assert config["conditions"]["stimulus_mean"] != pytest.approx(ConditionSpec().stimulus_mean)  # not the defaults
    assert config["info"]["data"]["recordings"] == len(data.recordings)
    # the saved weights are the EMA weights the trainer returned
    for (k, a), b in zip(m4.denoiser.state_dict().items(), loaded.denoiser.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), msg=k)
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    s4 = ckpt_state(last)
    assert s4["global_step"] == 4
    assert int(s4["state_dict"]["ema.n_averaged"]) == 4  # one EMA update per optimiser step
    first_log = metrics(out, 0)
    assert [int(r["step"]) for r in first_log if r.get("val/loss")] == [1, 3]  # validation every 2 steps

    # steps=6 on the same run folder resumes: 2 more optimiser steps, not 6 from scratch
    m6 = train(packed_dir, out, tcfg(6), mcfg=TINY, progress=False)
    assert m6.info["trained_steps"] == 6
    assert PainModel.load(out / "model").info["trained_steps"] == 6
    s6 = ckpt_state(last)
    assert s6["global_step"] == 6
    assert int(s6["state_dict"]["ema.n_averaged"]) == 6  # EMA restored and continued (a restart would also
    adam = s6["optimizer_states"][0]["state"]  # give 6 here; the log below tells the two apart)
    assert {int(v["step"]) for v in adam.values()} == {6}
    resumed_log = metrics(out, 1)
    val_steps = [int(r["step"]) for r in resumed_log if r.get("val/loss")]
    # one validation (after steps 5-6; Lightning labels it 5 or 6); a restart would validate 3 times from step 1
    assert len(val_steps) == 1 and val_steps[0] in (5, 6), resumed_log
    assert all(int(r["step"]) >= 4 for r in resumed_log)
    assert int(resumed_log[-1]["epoch"]) >= 2  # the epoch counter continues too
    # the raw weights moved on from the resumed state (trained), and the EMA weights stayed close to it
    w4, w6 = s4["state_dict"], s6["state_dict"]
    raw = [k for k in w4 if k.startswith("denoiser.") and w4[k].is_floating_point()]
    assert any(not torch.equal(w4[k], w6[k]) for k in raw)
    ema_shift = max(float((w4[k] - w6[k]).abs().max()) for k in w4 if k.startswith("ema.module."))
    raw_shift = max(float((w4[k] - w6[k]).abs().max()) for k in raw)
    assert ema_shift < raw_shift  # decay 0.999: the average moves far less than the weights

    # asking for no more steps than already done trains nothing and still writes the model
    again = train(packed_dir, out, tcfg(6), mcfg=TINY, progress=False)
    assert again.info["trained_steps"] == 6
    assert ckpt_state(last)["global_step"] == 6


def test_train_refuses_bad_data_in_one_line(tmp_path, cohort_dir, capsys):
    (tmp_path / "empty").mkdir()
    r = cli("train", tmp_path / "empty", "--out", tmp_path / "run", "--steps", 2)  # the real process, once
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1 and str(tmp_path / "empty") in lines[0], r.stderr
    assert not (tmp_path / "run").exists()
    for data in (cohort_dir, tmp_path / "nowhere"):  # a raw (unpacked) tree; nothing at all
        refused(capsys, "train", data, "--out", tmp_path / "run", "--steps", "2", words=[str(data)])
        assert not (tmp_path / "run").exists()
    with pytest.raises(PainDiffusionError):
        train(tmp_path / "empty", tmp_path / "run", tcfg(2), mcfg=TINY, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["empty"]


@pytest.mark.slow
def test_kill_and_resume_through_the_cli(tmp_path, packed_dir):
    """SIGKILL ``paindiffusion train`` once it has written last.ckpt (every 50 steps), run the same command
    again: it resumes and finishes the requested steps. Checkpoints are written under a temporary name and
    renamed into place, so last.ckpt existing means it is complete: no polling of its size."""
    run, steps = tmp_path / "run", 130
    args = ["train", packed_dir, "--out", run, "--steps", steps, "--batch", 1, "--threads", 1, "--checkpoint-every", 50]
    p = cli_process(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None and not last.is_file():
            time.sleep(0.05)
        assert p.poll() is None, "training ended before it could be killed"
        assert last.is_file(), "no last.ckpt within 120 s"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not (run / "model").exists()  # killed before the end
    killed_at = ckpt_state(last)["global_step"]
    assert killed_at in (50, 100)
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"trained {steps} steps" in r.stdout
    assert "Restoring states from the checkpoint" in r.stderr
    assert PainModel.load(run / "model").info["trained_steps"] == steps
    assert ckpt_state(last)["global_step"] == steps
    logs = sorted((run / "logs").iterdir())
    assert len(logs) == 2
    resumed = metrics(run, 1)
    assert resumed and all(int(r["step"]) >= killed_at - 1 for r in resumed), resumed  # continued, not restarted


def test_train_without_flags_is_the_shipped_recipe(packed_dir, tmp_path, capsys, monkeypatch):
    """`paindiffusion train DATA --out RUN` with no other flag trains what ships: the architecture, training,
    noise and sampler settings it passes are the shipped checkpoint's (its config.json records all four)."""
    from dataclasses import asdict

    from conftest import cli_here
    from paindiffusion import train as train_module
    from paindiffusion.checkpoint import default_checkpoint
    from paindiffusion.model import NoiseDistribution
    from paindiffusion.sampling import SamplerSettings

    seen = {}

    def capture(data, out, tcfg, mcfg=None, noise=None, sampler=None, **kw):
        seen.update(tcfg=tcfg, mcfg=mcfg, noise=noise or NoiseDistribution(), sampler=sampler or SamplerSettings())
        raise PainDiffusionError("captured")

    monkeypatch.setattr(train_module, "train", capture)
    code, _, err = cli_here(capsys, "train", str(packed_dir), "--out", str(tmp_path / "run"))
    assert code == 2 and "captured" in err, err
    shipped = json.loads((default_checkpoint() / "config.json").read_text())
    recipe = shipped["info"]["recipe"]
    drop_seed = lambda d: {k: v for k, v in d.items() if k != "seed"}  # noqa: E731
    assert drop_seed(asdict(seen["tcfg"])) == drop_seed(recipe["train"])
    assert asdict(seen["noise"]) == recipe["noise"]
    assert seen["mcfg"].to_dict() == shipped["model"]
    assert seen["sampler"].to_dict() == shipped["sampler"]
