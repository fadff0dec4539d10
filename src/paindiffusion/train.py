"""Training with Lightning: EDM loss with per-stack noise levels (diffusion forcing), EMA weights, resume.

``paindiffusion train DATA --out RUN`` writes Lightning checkpoints to ``RUN/checkpoints`` (``last.ckpt`` is
picked up again after a kill) and, at the end, the EMA weights as a safetensors checkpoint ``RUN/model``.
Devices, strategy and nodes are Lightning flags, so DDP over several GPUs or nodes needs no code change.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from .checkpoint import PainModel
from .conditions import HISTORY, ConditionSpec
from .dataset import PackedData, WindowSampler, floor_mirror_quantiles
from .errors import PainDiffusionError
from .files import atomic_file, claim_folder, folder_lock
from .model import Denoiser, ModelConfig, NoiseDistribution, Standardizer, edm_loss
from .sampling import SamplerSettings

RUN_KIND = "training run"  # the kind its folder's marker records (errors.MARKER)


@dataclass
class TrainConfig:
    steps: int = 16000  # 45 min on 2 CPU cores at batch 64
    batch: int = 64
    window: int = 64  # frames per training window (16 stacks; the sampler's window is 12)
    lr: float = 5e-4
    warmup: int = 300
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    change_fraction: float = 0.5  # share of windows placed around stimulus onsets/offsets
    val_every: int = 500
    val_batches: int = 8
    checkpoint_every: int = 100  # steps between resumable checkpoints (RUN/checkpoints/last.ckpt)
    seed: int = 0
    balance: float = 1.0  # draw rare-expressiveness subjects more often (dataset.balance_weights); 1 = bins equal
    calibrated: bool = True  # stimulus relative to each recording's threshold and tolerance (conditions.py)
    # Censored values at a channel's floor (an AU of exactly 0) are trained as draws below it
    # (dataset.floor_mirror_quantiles), so that clipping the model's output reproduces the data's share of zeros.
    floor_imputation: bool = True


class WindowDataset(Dataset):
    """Map-style view of a :class:`WindowSampler`; item i of epoch e is fixed by (seed, e, i)."""

    def __init__(self, sampler: WindowSampler, length: int, epoch_offset: int = 0):
        self.sampler, self.length, self.epoch = sampler, length, epoch_offset

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        w = self.sampler.sample(i, self.epoch)
        return {"frames": torch.from_numpy(w.frames.copy()), "stimulus": torch.from_numpy(w.stimulus.copy()),
                "expressiveness": torch.tensor(w.expressiveness, dtype=torch.float32),
                "emotion": torch.tensor(w.emotion, dtype=torch.int64),
                "calibration": torch.tensor(w.calibration or (float("nan"), float("nan")), dtype=torch.float32),
                "resting": torch.from_numpy(w.resting_face if w.resting_face is not None
                                            else np.full(w.frames.shape[-1], np.nan, np.float32))}


class NewWindowsEachEpoch(L.Callback):
    """Draw a fresh set of training windows every epoch (window i of epoch e is fixed by (seed, e, i))."""

    def __init__(self, dataset: WindowDataset):
        self.dataset = dataset

    def on_train_epoch_start(self, trainer, pl_module):
        self.dataset.epoch = trainer.current_epoch


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically (a kill never leaves a torn last.ckpt) and read back with
    ``weights_only=True``: resuming never runs pickled code, whatever the environment says."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_file(path) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as e:  # torn, foreign or pickled-object file: one line, and how to start over
            raise PainDiffusionError(f"cannot resume: not a plain-tensor checkpoint, or damaged ({type(e).__name__}); "
                                     "delete it to start over", path) from None


class DiffusionTask(L.LightningModule):
    def __init__(self, model: dict, conditions: dict, stats: dict, train: dict, noise: dict, floor: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.cfg, self.tcfg = ModelConfig(**model), TrainConfig(**train)
        self.spec = ConditionSpec.from_dict(conditions)
        self.noise = NoiseDistribution(**noise)
        self.denoiser = Denoiser(self.cfg)
        self.standardizer = Standardizer(stats["frames_mean"], stats["frames_std"])
        self.ema = AveragedModel(self.denoiser, multi_avg_fn=get_ema_multi_avg_fn(self.tcfg.ema_decay), use_buffers=True)
        # floor: each channel's lowest value and (dim, n) depths below it to draw censored values from (None: train
        # on the values as they are)
        self.register_buffer("floor_low", torch.tensor(floor["low"], dtype=torch.float32) if floor else None)
        self.register_buffer("floor_depths", torch.tensor(floor["depths"], dtype=torch.float32) if floor else None)

    def uncensor(self, frames: torch.Tensor, generator=None) -> torch.Tensor:
        """Each value exactly at its channel's floor becomes the floor minus a depth drawn from that channel's
        quantiles (:func:`paindiffusion.dataset.floor_mirror_quantiles`); channels without any keep their values."""
        depths = self.floor_depths
        n = depths.shape[1]
        pick = torch.randint(0, n, frames.shape, generator=generator).to(frames.device)  # (B, T, dim)
        depth = depths.T[pick, torch.arange(frames.shape[-1], device=frames.device)]  # depths[c, pick[..., c]]
        return torch.where(frames == self.floor_low, self.floor_low - depth, frames)

    def _loss(self, batch: dict, denoiser: torch.nn.Module, generator=None, dropout: bool = True) -> torch.Tensor:
        frames = batch["frames"] if self.floor_depths is None else self.uncensor(batch["frames"], generator)
        x = self.standardizer.encode(frames)
        b, t, _ = x.shape
        cal = batch["calibration"]  # unknown (NaN) → the default, as at sampling time
        cal = torch.where(torch.isnan(cal), torch.tensor(self.spec.calibration, dtype=cal.dtype, device=cal.device), cal)
        resting = self.standardizer.encode(batch["resting"]) if self.cfg.resting_face else None
        cond = self.spec.batch(batch["stimulus"], batch["expressiveness"], batch["emotion"], t, calibration=cal, resting=resting)
        if dropout:
            cond = self.spec.dropout(cond, generator)
        sigma = self.noise.per_frame(b, t // self.cfg.group, self.cfg.group, generator).to(x.device)
        return edm_loss(denoiser, x, sigma, cond)

    def training_step(self, batch, _):
        loss = self._loss(batch, self.denoiser)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, *_):
        self.ema.update_parameters(self.denoiser)

    def validation_step(self, batch, i):
        # The same noise every validation (comparable numbers), drawn from a forked RNG: reseeding the global
        # one here restarted the training σ draws, noise and condition dropout after every validation.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + i)
            loss = self._loss(batch, self.ema.module, torch.Generator().manual_seed(1000 + i), dropout=False)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["frames"].shape[0])

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=self.tcfg.lr, weight_decay=self.tcfg.weight_decay,
                                betas=(0.9, 0.99))
        t = self.tcfg

        def schedule(step: int) -> float:  # linear warm-up, cosine decay to 10%
            if step < t.warmup:
                return (step + 1) / t.warmup
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}


def train(data_dir: str | Path, out: str | Path, tcfg: TrainConfig | None = None, mcfg: ModelConfig | None = None,
          noise: NoiseDistribution | None = None, sampler: SamplerSettings | None = None,
          accelerator: str = "cpu", devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
          progress: bool = True) -> PainModel:
    """Train (or resume) a model on a packed dataset; returns the EMA model, also saved to ``out/model``."""
    tcfg, noise, sampler = tcfg or TrainConfig(), noise or NoiseDistribution(), sampler or SamplerSettings()
    out = Path(out)
    data = PackedData(data_dir)
    mcfg = mcfg or ModelConfig(dim=data.space.dim)
    if mcfg.dim != data.space.dim:
        raise PainDiffusionError(f"model width {mcfg.dim} does not match the data's face space ({data.space.dim})")
    if tcfg.window % mcfg.group or tcfg.window // mcfg.group > mcfg.max_tokens:
        raise PainDiffusionError(f"training window {tcfg.window} must be a multiple of {mcfg.group} and at most {mcfg.group * mcfg.max_tokens} frames")
    spec = ConditionSpec.from_data(data, calibrated=tcfg.calibrated, resting_faces=mcfg.resting_face)
    claim_folder(out, RUN_KIND, inputs=(data_dir,))  # after the checks: a refused run writes nothing
    # A second run into the same folder is refused, not interleaved. Lightning's DDP starts the other ranks as
    # copies of this process (LOCAL_RANK / NODE_RANK set): only the first one holds the lock.
    first = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
    with folder_lock(out, RUN_KIND) if first else contextlib.nullcontext():
        return _fit(data, out, tcfg, mcfg, spec, noise, sampler, accelerator, devices, strategy, num_nodes, progress)


def _fit(data: PackedData, out: Path, tcfg: TrainConfig, mcfg: ModelConfig, spec: ConditionSpec,
         noise: NoiseDistribution, sampler: SamplerSettings, accelerator, devices, strategy, num_nodes,
         progress) -> PainModel:
    L.seed_everything(tcfg.seed, verbose=False)
    floor = {"low": list(data.space.low), "depths": floor_mirror_quantiles(data, seed=tcfg.seed).tolist()} \
        if tcfg.floor_imputation else None
    task = DiffusionTask(mcfg.to_dict(), spec.to_dict(), data.stats, asdict(tcfg), asdict(noise), floor)
    train_sampler = WindowSampler(data, "train", tcfg.window, HISTORY, tcfg.change_fraction, tcfg.seed, tcfg.balance)
    val_split = "val" if data.split("val") else "train"
    val_sampler = WindowSampler(data, val_split, tcfg.window, HISTORY, tcfg.change_fraction, tcfg.seed + 1)
    # One "epoch" = val_every steps, so validation, checkpoints and resume points line up.
    train_windows = WindowDataset(train_sampler, tcfg.val_every * tcfg.batch)
    train_loader = DataLoader(train_windows, batch_size=tcfg.batch, shuffle=True,
                              generator=torch.Generator().manual_seed(tcfg.seed), num_workers=0)
    val_loader = DataLoader(WindowDataset(val_sampler, tcfg.val_batches * tcfg.batch), batch_size=tcfg.batch, num_workers=0)
    ckpt_dir = out / "checkpoints"
    if (ckpt_dir / "last.ckpt").is_file():  # a foreign or torn file fails here, in one line, before Lightning
        SafeCheckpointIO().load_checkpoint(ckpt_dir / "last.ckpt")
    try:  # Lightning checks --accelerator/--devices/--strategy/--num-nodes here
        trainer = L.Trainer(
            max_steps=tcfg.steps, accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
            default_root_dir=str(out), logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"),
            callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=0,
                                                           every_n_train_steps=tcfg.checkpoint_every),
                       L.pytorch.callbacks.LearningRateMonitor(), NewWindowsEachEpoch(train_windows)],
            enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=20, num_sanity_val_steps=0,
            gradient_clip_val=1.0, plugins=[SafeCheckpointIO()],
        )
    except (MisconfigurationException, ValueError, RuntimeError, TypeError) as e:
        raise PainDiffusionError(f"Lightning refused --accelerator {accelerator} --devices {devices} --strategy {strategy} "
                                 f"--num-nodes {num_nodes}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    last = ckpt_dir / "last.ckpt"
    started = time.time()
    trainer.fit(task, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None,
                weights_only=True)
    trainer.save_checkpoint(str(last), weights_only=False)  # the final state too, optimiser included (resumable)
    val = trainer.callback_metrics.get("val/loss")
    info = {"trained_steps": int(trainer.global_step), "batch": tcfg.batch, "window": tcfg.window,
            "train_seconds_this_run": round(time.time() - started, 1), "final_val_loss": None if val is None else float(val),
            "data": {"source": data.meta.get("source"), "recordings": len(data.recordings),
                     "train_subjects": len({r["subject"] for r in data.recordings if r["split"] == "train"}),
                     "test_recordings": [r["name"] for r in data.recordings if r["split"] == "test"]},
            "parameters": sum(p.numel() for p in task.denoiser.parameters()),
            "recipe": {"train": asdict(tcfg), "noise": asdict(noise)}}  # with model and sampler: how it was made
    model = PainModel(task.ema.module.cpu().eval(), task.standardizer.cpu(), spec, data.space, sampler, info)
    if trainer.is_global_zero:
        model.save(out / "model")
    return model
