"""A trained model as users hold it: ``model.safetensors`` + ``config.json`` in one folder.

Loading never unpickles (DESIGN §2: the official checkpoints were pickles saved on cuda:0): weights are
safetensors, everything else — face space, model shape, condition statistics, normalisation, sampler
defaults, training record — is JSON. A folder that is missing a file, corrupt, or does not match its own
config gives one line saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from .conditions import ConditionSpec
from .errors import PainDiffusionError, atomic_directory
from .facespace import FaceSpace, get_space
from .model import Denoiser, ModelConfig, Standardizer
from .sampling import SamplerSettings

FORMAT = "paindiffusion-checkpoint"
VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


@dataclass
class PainModel:
    """Denoiser + everything needed to use it: normalisation, condition statistics, face space, sampler."""

    denoiser: Denoiser
    standardizer: Standardizer
    spec: ConditionSpec
    space: FaceSpace
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    info: dict = field(default_factory=dict)  # training record and test metrics (the model card's numbers)

    @property
    def config(self) -> ModelConfig:
        return self.denoiser.cfg

    def decode(self, z: torch.Tensor) -> np.ndarray:
        """Latents (..., T, dim) → face frames clipped to the space's ranges, float32 numpy."""
        return self.space.clip(self.standardizer.decode(z.float()).numpy())

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        return self.standardizer.encode(torch.as_tensor(np.asarray(frames, np.float32)))

    def eval(self) -> "PainModel":
        self.denoiser.eval()
        return self

    # ---- files ------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, half: bool = False) -> Path:
        """Write the folder atomically; ``half`` stores fp16 weights (loaded back as fp32)."""
        path = Path(path)
        state = {f"denoiser.{k}": v for k, v in self.denoiser.state_dict().items()}
        state.update({f"standardizer.{k}": v for k, v in self.standardizer.state_dict().items()})
        state = {k: (v.half() if half and v.is_floating_point() and k.startswith("denoiser.") else v).contiguous()
                 for k, v in state.items()}
        config = {"format": FORMAT, "version": VERSION, "face_space": self.space.to_dict(),
                  "model": self.config.to_dict(), "conditions": self.spec.to_dict(),
                  "sampler": self.sampler.to_dict(), "info": self.info}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(path) as tmp:
            save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
            os.chmod(tmp / WEIGHTS, 0o644)  # an ordinary, shareable file (the writer makes it private)
            # The header's own checks miss flipped bytes inside tensor data: the config records a checksum.
            config["weights_sha256"] = hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest()
            (tmp / CONFIG).write_text(json.dumps(config, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "PainModel":
        """Load a checkpoint folder (or its ``config.json`` / ``model.safetensors``); None = the shipped model."""
        path = default_checkpoint() if path is None else Path(path)
        if path.is_file():
            path = path.parent
        wpath, cpath = path / WEIGHTS, path / CONFIG
        for p in (wpath, cpath):
            if not p.is_file():
                raise PainDiffusionError(f"checkpoint is missing {p.name}; a checkpoint folder holds {WEIGHTS} and {CONFIG} (from 'paindiffusion train')", path)
        try:
            config = json.loads(cpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PainDiffusionError(f"config is not valid JSON ({e}); the checkpoint is corrupt, re-export it", cpath) from None
        if not isinstance(config, dict):
            raise PainDiffusionError(f"config is a JSON {type(config).__name__}, not an object; the checkpoint is corrupt, re-export it", cpath)
        if config.get("format") != FORMAT or config.get("version") != VERSION:
            raise PainDiffusionError(f"not a {FORMAT} v{VERSION} config (format={config.get('format')!r}, version={config.get('version')!r})", cpath)
        try:
            space = get_space(config["face_space"]["name"])
            if list(space.channels) != config["face_space"]["channels"]:
                raise PainDiffusionError(f"face space {space.name!r} channels differ from this version's; the checkpoint was made for another release", cpath)
            mcfg = ModelConfig(**config["model"])
            spec = ConditionSpec.from_dict(config["conditions"])
            sampler = SamplerSettings.from_dict(config.get("sampler", {})).validate()
            _check_model_config(mcfg)
        except (KeyError, TypeError, AttributeError) as e:
            raise PainDiffusionError(f"config lacks or mistypes {e}; the checkpoint is incomplete, re-export it", cpath) from None
        if mcfg.dim != space.dim:
            raise PainDiffusionError(f"model width {mcfg.dim} does not match face space {space.name!r} ({space.dim} channels)", cpath)
        try:
            data = wpath.read_bytes()
            state = load_bytes(data)
        except (SafetensorError, OSError, ValueError) as e:
            raise PainDiffusionError(f"weights are unreadable ({e}); the file is corrupt or truncated, re-download or re-export it", wpath) from None
        digest = config.get("weights_sha256")  # absent in checkpoints written before it was recorded
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            raise PainDiffusionError(f"weights do not match the checksum in {CONFIG}; the file is corrupt, or the two files come from different models: re-download or re-export it", wpath)
        denoiser = Denoiser(mcfg)
        standardizer = Standardizer(torch.zeros(space.dim), torch.ones(space.dim))
        try:
            denoiser.load_state_dict({k[9:]: v.float() for k, v in state.items() if k.startswith("denoiser.")})
            standardizer.load_state_dict({k[13:]: v.float() for k, v in state.items() if k.startswith("standardizer.")})
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise PainDiffusionError(f"weights do not match config.json ({first[1].strip() if len(first) > 1 else first[0]}); the two files come from different models", path) from None
        return cls(denoiser, standardizer, spec, space, sampler, config.get("info", {})).eval()


def _check_model_config(cfg: ModelConfig) -> None:
    """Types and sizes a Denoiser can be built from (a hand-edited config must fail here, in one line)."""
    for k, v in cfg.to_dict().items():
        if k == "cond_tokens":
            if not isinstance(v, bool):
                raise TypeError(f"model.{k} = {v!r} (must be true or false)")
            continue
        ok = isinstance(v, (int, float)) if k == "sigma_data" else isinstance(v, int)
        if isinstance(v, bool) or not ok or v <= 0:
            raise TypeError(f"model.{k} = {v!r} (must be a positive {'number' if k == 'sigma_data' else 'integer'})")
    if cfg.width % cfg.heads:
        raise TypeError(f"model.width {cfg.width} is not a multiple of model.heads {cfg.heads}")


def default_checkpoint() -> Path:
    """The model shipped inside the package (trained on the synthetic cohort; see MODEL_CARD.md)."""
    p = Path(str(resources.files("paindiffusion") / "assets" / "model"))
    if not (p / WEIGHTS).is_file():
        raise PainDiffusionError("the shipped checkpoint is missing from this installation; reinstall paindiffusion or pass --checkpoint RUN/model", p)
    return p
