"""A trained model as users hold it: ``model.safetensors`` + ``config.json`` in one folder.

Loading never unpickles (docs/design.md §2: the official checkpoints were pickles saved on cuda:0): weights are
safetensors, everything else — face space, model shape, condition statistics, normalisation, sampler
defaults, training record — is JSON. A folder that is missing a file, corrupt, or does not match its own
config gives one line saying so.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from .conditions import HISTORY, ConditionSpec
from .errors import PainDiffusionError
from .files import atomic_directory
from .facespace import EMOTIONS, FaceSpace, get_space
from .model import Denoiser, ModelConfig, Standardizer
from .sampling import SamplerSettings

FORMAT = "paindiffusion-checkpoint"
VERSION = 2
WEIGHTS, CONFIG = "model.safetensors", "config.json"
# Format 1 (paindiffusion 0.1) named architecture variants this release no longer builds. A format-1 config is
# read when it holds the one variant that is built here (model v5's), and its settings are dropped; any other
# value means model v1-v4, which paindiffusion 0.1 reads.
RETIRED_IN_FORMAT_2 = {"model": {"cond_tokens": True, "expressiveness_features": "smooth", "readout": "conv",
                                 "patches": "interp_sigma"},
                       "sampler": {"eta": 0.0}}
# Settings format 1 did not have, with the values that reproduce model v5 (not today's defaults, which are the
# shipped recipe: a v5 network has no resting-face input and was sampled on the stack ramp).
ADDED_IN_FORMAT_2 = {"model": {"resting_face": False},
                     "conditions": {"expressiveness_map": [], "resting_faces": {}},
                     "sampler": {"guidance_max_sigma": 0.0, "ramp": "stack", "enter_at_context": False}}


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
        """Write the folder atomically; ``half`` stores fp16 weights (loaded back as fp32). The folder is loaded
        back before it replaces ``path``: a checkpoint that :meth:`load` would refuse is never written."""
        path = Path(path)
        state = {f"denoiser.{k}": v for k, v in self.denoiser.state_dict().items()}
        state.update({f"standardizer.{k}": v for k, v in self.standardizer.state_dict().items()})
        state = {k: (v.half() if half and v.is_floating_point() and k.startswith("denoiser.") else v).contiguous()
                 for k, v in state.items()}
        config = {"format": FORMAT, "version": VERSION, "face_space": self.space.to_dict(),
                  "model": self.config.to_dict(), "conditions": self.spec.to_dict(),
                  "sampler": self.sampler.to_dict(), "info": self.info}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(path, "checkpoint", overwrite=True, known_files=(WEIGHTS, CONFIG)) as tmp:
            save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
            os.chmod(tmp / WEIGHTS, 0o644)  # an ordinary, shareable file (the writer makes it private)
            # The header's own checks miss flipped bytes inside tensor data: the config records a checksum.
            config["weights_sha256"] = hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest()
            (tmp / CONFIG).write_text(json.dumps(config, indent=1) + "\n")
            try:
                PainModel.load(tmp)
            except PainDiffusionError as e:
                raise PainDiffusionError(f"the checkpoint would not load ({str(e).split(': ', 1)[-1]}); nothing was "
                                         "written", path) from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "PainModel":
        """Load a checkpoint folder (or its ``config.json`` / ``model.safetensors``); None = the shipped model."""
        path = default_checkpoint() if path is None else Path(path)
        if path.is_file():
            if path.name not in (WEIGHTS, CONFIG):
                raise PainDiffusionError(f"is a file, not a checkpoint folder; pass the folder that holds {WEIGHTS} and "
                                         f"{CONFIG} (from 'paindiffusion train')", path)
            path = path.parent
        wpath, cpath = path / WEIGHTS, path / CONFIG
        for p in (wpath, cpath):
            if not p.is_file():
                raise PainDiffusionError(f"checkpoint is missing {p.name}; a checkpoint folder holds {WEIGHTS} and {CONFIG} (from 'paindiffusion train')", path)
        for p, cap in ((cpath, MAX_CONFIG_BYTES), (wpath, MAX_WEIGHTS_BYTES)):  # before reading anything
            if p.stat().st_size > cap:
                raise PainDiffusionError(f"is {p.stat().st_size / 2**20:.0f} MiB, more than a checkpoint's {p.name} can be "
                                         f"({cap / 2**20:.0f} MiB); this is not a paindiffusion checkpoint", p)
        try:
            config = json.loads(cpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise PainDiffusionError(f"config is not valid JSON ({why}); the checkpoint is corrupt, re-export it", cpath) from None
        if not isinstance(config, dict):
            raise PainDiffusionError(f"config is a JSON {type(config).__name__}, not an object; the checkpoint is corrupt, re-export it", cpath)
        if config.get("format") != FORMAT or config.get("version") not in (1, VERSION):
            raise PainDiffusionError(f"not a {FORMAT} v{VERSION} config (format={config.get('format')!r}, version={config.get('version')!r})", cpath)
        config = upgrade_config(config, cpath)
        try:
            fs = _block(config, "face_space", {"name": "", "channels": []})
            space = get_space(fs["name"])
            if list(space.channels) != fs["channels"]:
                raise PainDiffusionError(f"face space {space.name!r} channels differ from this version's; the checkpoint was made for another release", cpath)
            mcfg = ModelConfig(**_block(config, "model", ModelConfig().to_dict()))
            _check_model_config(mcfg)
            if mcfg.dim != space.dim:
                raise PainDiffusionError(f"model width {mcfg.dim} does not match face space {space.name!r} ({space.dim} channels)", cpath)
            spec = ConditionSpec.from_dict(_block(config, "conditions", ConditionSpec().to_dict()))
            _check_conditions(spec, mcfg)
            _check_resting_faces(spec, mcfg, space)
            sampler = SamplerSettings.from_dict(_block(config, "sampler", SamplerSettings().to_dict())).validate()
            check_sampler_bounds(sampler, mcfg)
            info = config.get("info", {})
            if not isinstance(info, dict):
                raise TypeError(f"info = {info!r:.40} (must be an object)")
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            if isinstance(e, PainDiffusionError) and str(cpath) in str(e):
                raise
            msg = str(e).strip("'\"") if not isinstance(e, KeyError) else f"lacks {e}"
            raise PainDiffusionError(f"config {msg}; the checkpoint is incomplete or hand-edited, re-export it", cpath) from None
        try:
            data = wpath.read_bytes()
            state = load_bytes(data)
        except (SafetensorError, OSError, ValueError) as e:
            raise PainDiffusionError(f"weights are unreadable ({e}); the file is corrupt or truncated, re-download or re-export it", wpath) from None
        digest = config.get("weights_sha256")  # absent in checkpoints written before it was recorded
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            raise PainDiffusionError(f"weights do not match the checksum in {CONFIG}; the file is corrupt, or the two files come from different models: re-download or re-export it", wpath)
        _check_tensors(state, space.dim, wpath)
        denoiser = Denoiser(mcfg)
        standardizer = Standardizer(torch.zeros(space.dim), torch.ones(space.dim))
        try:
            denoiser.load_state_dict({k[9:]: v.float() for k, v in state.items() if k.startswith("denoiser.")})
            standardizer.load_state_dict({k[13:]: v.float() for k, v in state.items() if k.startswith("standardizer.")})
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise PainDiffusionError(f"weights do not match config.json ({first[1].strip() if len(first) > 1 else first[0]}); the two files come from different models", path) from None
        return cls(denoiser, standardizer, spec, space, sampler, info).eval()


def upgrade_config(config: dict, where) -> dict:
    """The one migration of older checkpoint configs: a format-1 config of model v5 becomes a format-2 config (its
    retired settings dropped, the keys added since set to v5's values); one of model v1-v4 is refused in one line
    that names the release that reads it."""
    if config.get("version") == VERSION:
        return config
    config = {**config}
    for name, retired in RETIRED_IN_FORMAT_2.items():
        block = config.get(name)
        if not isinstance(block, dict):
            continue  # _block reports it
        for key, kept in retired.items():
            if block.get(key, None) != kept:
                raise PainDiffusionError(f"checkpoint of an earlier model generation ({name}.{key} = {block.get(key)!r:.30}); "
                                         f"paindiffusion 0.1 reads it, this release reads model v5 and later: retrain "
                                         f"with 'paindiffusion train'", where)
        config[name] = {k: v for k, v in block.items() if k not in retired}
    for name, added in ADDED_IN_FORMAT_2.items():
        if isinstance(config.get(name), dict):
            config[name] = {**added, **config[name]}
    return config


# One policy for every block of config.json: it must be a JSON object; an unknown key is an error (a typo
# would otherwise be ignored); every key must be there; a value must have the default's JSON type.
MAX_CONFIG_BYTES = 4 * 2**20  # ours are ~2 KB
MAX_WEIGHTS_BYTES = 1 * 2**30  # ours are ~2-4 MB; a bigger file is not ours and is not read into memory
SAMPLER_LIMITS = {"levels": 1000, "warmup": 1000, "context": None}  # None: limited by the model's window


def _kind(v) -> str:
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", tuple: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _block(config: dict, name: str, defaults: dict) -> dict:
    block = config.get(name)
    required = list(defaults)
    name = name.replace("_", " ")
    if not isinstance(block, dict):
        raise TypeError(f"block {name!r} is {'missing' if block is None else _kind(block)} (must be an object)")
    unknown = sorted(set(block) - set(defaults))
    if unknown:
        raise TypeError(f"{name}.{unknown[0]} is not a known setting")
    missing = [k for k in required if k not in block]
    if missing:
        raise TypeError(f"{name}.{missing[0]} is missing")
    for k, v in block.items():
        want, got = _kind(defaults[k]), _kind(v)
        if want != got and not (want == "a number" and got == "a number"):
            raise TypeError(f"{name}.{k} = {v!r:.40} (must be {want})")
    return block


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_conditions(spec: ConditionSpec, mcfg: ModelConfig) -> None:
    for k in ("stimulus_mean", "expressiveness_mean"):
        if not _finite(getattr(spec, k)):
            raise TypeError(f"conditions.{k} = {getattr(spec, k)!r} (must be a finite number)")
    for k in ("stimulus_std", "expressiveness_std"):
        if not _finite(getattr(spec, k)) or getattr(spec, k) <= 0:
            raise TypeError(f"conditions.{k} = {getattr(spec, k)!r} (must be a positive number)")
    if set(spec.presets) != {"low", "medium", "high"} or not all(_finite(v) and 0 <= v <= 16 for v in spec.presets.values()):
        raise TypeError(f"conditions.presets = {spec.presets!r:.60} (must give low, medium and high PSPI in 0-16)")
    if len(spec.drop) != 3 or not all(_finite(p) and 0 <= p <= 1 for p in spec.drop):
        raise TypeError(f"conditions.drop = {list(spec.drop)!r:.40} (must be 3 probabilities)")
    definition = ConditionSpec.expressiveness_definition  # the one this release computes; earlier: paindiffusion 0.1
    if spec.expressiveness_definition != definition:
        raise TypeError(f"conditions.expressiveness_definition = {spec.expressiveness_definition!r:.40} (this release "
                        f"reads {definition!r}; paindiffusion 0.1 reads older scales)")
    if spec.stimulus_reference not in ("celsius", "calibrated"):
        raise TypeError(f"conditions.stimulus_reference = {spec.stimulus_reference!r:.40} (must be celsius or calibrated)")
    try:  # the same rule as a patient's pain range given at run time
        if len(spec.calibration) != 2:
            raise PainDiffusionError("must be (threshold, tolerance)")
        spec.calibration_value(*spec.calibration)
    except PainDiffusionError as err:
        raise TypeError(f"conditions.calibration = {list(spec.calibration)!r:.40} ({err})") from None
    _check_expressiveness_map(spec)
    if len(spec.lags) != mcfg.n_lags or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= HISTORY for x in spec.lags):
        raise TypeError(f"conditions.lags = {list(spec.lags)!r:.60} (must be {mcfg.n_lags} whole numbers in 0-{HISTORY})")


def _check_resting_faces(spec: ConditionSpec, mcfg: ModelConfig, space: FaceSpace) -> None:
    """Emotion names → non-empty lists of faces of the model's width, each finite and within the face space."""
    faces = spec.resting_faces
    if not isinstance(faces, dict) or not set(faces) <= set(EMOTIONS):
        raise TypeError(f"conditions.resting_faces has keys {sorted(faces)!r:.60} (must be emotion names)")
    lo, hi = np.asarray(space.low) - 1e-3, np.asarray(space.high) + 1e-3
    for e, fs in faces.items():
        ok = isinstance(fs, list) and fs and all(isinstance(f, (list, tuple)) and len(f) == mcfg.dim for f in fs)
        if ok:
            a = np.asarray(fs, np.float64) if all(_finite(v) for f in fs for v in f) else None
            ok = a is not None and bool(((a >= lo) & (a <= hi)).all())
        if not ok:
            raise TypeError(f"conditions.resting_faces[{e!r}] (must be a non-empty list of {mcfg.dim}-channel faces "
                            f"within the face space's ranges)")
    if mcfg.resting_face and not faces:
        raise TypeError("conditions.resting_faces is empty, but the model reads a resting face (model.resting_face)")


def _check_expressiveness_map(spec: ConditionSpec) -> None:
    """Knots (requested, fed): at least 2, requested strictly increasing over the trained range, fed
    non-decreasing (a higher request never feeds less) and inside the trained range."""
    knots, (lo, hi) = spec.expressiveness_map, spec.expressiveness_range
    if not knots:
        return
    pairs = [p for p in knots if isinstance(p, (list, tuple)) and len(p) == 2 and all(_finite(v) for v in p)]
    req, fed = ([p[i] for p in pairs] for i in (0, 1))
    if len(pairs) != len(knots) or len(pairs) < 2 or any(b <= a for a, b in zip(req, req[1:])) \
            or any(b < a for a, b in zip(fed, fed[1:])) or not all(lo - 1e-6 <= v <= hi + 1e-6 for v in fed):
        raise TypeError(f"conditions.expressiveness_map = {[list(p) for p in knots]!r:.60} (must be ≥ 2 [requested, fed] "
                        f"pairs, requested increasing, fed non-decreasing within {lo:g}-{hi:g})")


def _check_model_config(cfg: ModelConfig) -> None:
    """Types and sizes a Denoiser can be built from (a hand-edited config must fail here, in one line)."""
    for k, v in cfg.to_dict().items():
        if k == "resting_face":
            if not isinstance(v, bool):
                raise TypeError(f"model.{k} = {v!r} (must be true or false)")
            continue
        ok = isinstance(v, (int, float)) if k == "sigma_data" else isinstance(v, int)
        if isinstance(v, bool) or not ok or not v > 0 or (k == "sigma_data" and not math.isfinite(v)):
            raise TypeError(f"model.{k} = {v!r} (must be a positive {'number' if k == 'sigma_data' else 'integer'})")
        if k in ("width", "depth", "heads", "max_tokens", "n_lags", "n_emotions", "group", "mlp_ratio") and v > 4096:
            raise TypeError(f"model.{k} = {v!r} (too large for a paindiffusion model)")
    if cfg.width % cfg.heads:
        raise TypeError(f"model.width {cfg.width} is not a multiple of model.heads {cfg.heads}")
    if cfg.group % 2:
        raise TypeError(f"model.group {cfg.group} must be even (tokens are embedded from overlapping patches)")


def check_sampler_bounds(s: SamplerSettings, mcfg: ModelConfig) -> SamplerSettings:
    """Upper limits a run can finish in (``warmup = 1e9`` would run for days); one line otherwise."""
    limits = {**SAMPLER_LIMITS, "context": mcfg.max_tokens - 1}
    for k, top in limits.items():
        if getattr(s, k) > top:
            raise PainDiffusionError(f"sampler setting {k} = {getattr(s, k)!r} is above its limit {top}")
    return s


def _check_tensors(state: dict, dim: int, wpath: Path) -> None:
    """Float weights (an int tensor would be cast silently), all finite, and a usable standardiser."""
    for k, v in state.items():
        if not v.is_floating_point() and k != "denoiser.n_averaged":
            raise PainDiffusionError(f"tensor {k} is {v.dtype}, not floating point; the weights were altered, re-export them", wpath)
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise PainDiffusionError(f"tensor {k} has NaN/inf values; the checkpoint is broken (a diverged run?), re-export it", wpath)
    std = state.get("standardizer.std")
    if std is None or std.shape != (dim,) or not bool((std > 0).all()):
        raise PainDiffusionError(f"standardizer.std must be {dim} positive values (a zero std erases a channel); "
                                 "the weights were altered, re-export them", wpath)


def default_checkpoint() -> Path:
    """The model shipped inside the package (trained on the synthetic cohort; see MODEL_CARD.md)."""
    p = Path(str(resources.files("paindiffusion") / "assets" / "model"))
    if not (p / WEIGHTS).is_file():
        raise PainDiffusionError("the shipped checkpoint is missing from this installation; reinstall paindiffusion or pass --checkpoint RUN/model", p)
    return p
