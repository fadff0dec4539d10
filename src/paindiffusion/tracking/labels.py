"""Conditions read from a tracked face: expressiveness from PSPI, emotion from AUs or a labels file.

* **Expressiveness** is whatever :func:`paindiffusion.dataset.expressiveness_of` says it is (one definition for
  the cohort, packed data and tracked video); here it is only called.
* **Emotion** (AffectNet's 8 classes), EMFACS-style: the recording's resting face — the median AUs of its half
  of frames with the lowest PSPI, so that pain episodes do not read as anger or disgust — goes to the
  evaluation's nearest-prototype classifier (:func:`paindiffusion.evaluation.metrics.classify_emotion`: each
  class's prototypical AUs, :data:`paindiffusion.cohort.EMOTION_AUS`, at the best intensity in 0.5-1.5× the
  prototype; Neutral has none, so a face at rest reads as Neutral).
* A **labels file** (CSV with a header: ``name`` or ``video``, and ``emotion``; optional ``subject``) overrides
  the rule for the recordings it lists.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..cohort import EMOTION_AUS
from ..errors import PainDiffusionError
from ..evaluation.metrics import classify_emotion, emotion_prototypes
from ..facespace import EMOTIONS, FACS, FACS_AUS, emotion_index
from ..tables import Table


def resting_aus(frames: np.ndarray, pspi: np.ndarray | None = None) -> np.ndarray:
    """Median AUs (17,) over the half of the frames with the lowest PSPI."""
    f = np.asarray(frames)[:, : len(FACS_AUS)]
    pspi = FACS.pspi(np.asarray(frames)) if pspi is None else np.asarray(pspi)
    calm = np.argsort(pspi, kind="stable")[: max(1, len(f) // 2)]
    return np.median(f[calm], axis=0)


def emotion_from_aus(frames: np.ndarray, pspi: np.ndarray | None = None) -> str:
    """AffectNet class whose prototype (scaled 0.5-1.5×) is nearest to the resting AUs."""
    proto = emotion_prototypes(FACS.channels, EMOTION_AUS, EMOTIONS)
    return EMOTIONS[int(classify_emotion(resting_aus(frames, pspi)[None], proto, EMOTIONS.index("Neutral"))[0])]


def read_labels(path: str | os.PathLike) -> dict[str, dict]:
    """Labels file → {recording or video stem: {"emotion": class, "subject": id?}}. Read with the one CSV reader
    (:class:`~paindiffusion.tables.Table`: UTF-8 with or without BOM, comma, semicolon or tab; one-line errors)."""
    path = Path(path)
    what = "labels CSV with columns name (or video) and emotion"
    with Table(path, what) as table:
        header = table.header
        if "emotion" not in header or not ({"name", "video"} & set(header)):
            raise PainDiffusionError("labels file needs a header with 'name' (or 'video') and 'emotion' columns", path)
        rows = [(line, dict(zip(header, (c.strip() for c in cells)))) for line, cells in table.rows()]
    if not rows:
        raise PainDiffusionError("labels file has no rows after its header", path)
    out = {}
    for line, row in rows:
        key = Path(row.get("name") or row.get("video") or "").stem
        if not key:
            raise PainDiffusionError(f"line {line} has no name", path)
        try:
            entry = {"emotion": EMOTIONS[emotion_index(row["emotion"])]}
        except PainDiffusionError as e:
            raise PainDiffusionError(f"line {line}: {e}", path) from None
        if row.get("subject"):
            entry["subject"] = row["subject"]
        out[key] = entry
    return out
