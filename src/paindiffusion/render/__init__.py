"""Seeing the face: the open face mesh, its FACS-AU rig, a headless renderer, video and exports.

``save_output(path, seq)`` is the one entry point: it writes a :class:`~paindiffusion.sequence.FaceSequence`
as a rendered mp4 or as data for avatars and robots, chosen by the file name (see :mod:`.exports`).
GL and video libraries are imported only when a renderer or a video is made.
"""

from .exports import (ARKIT_NAMES, AU_TO_ARKIT, arkit_from_facs, arkit_weights, check_new_output, check_output, robot_frames,
                      save_output)
from .mesh import FaceMesh, canonical_mesh
from .rig import FaceRig

__all__ = ["ARKIT_NAMES", "AU_TO_ARKIT", "FaceMesh", "arkit_from_facs", "FaceRig", "arkit_weights", "canonical_mesh",
           "robot_frames", "save_output", "check_output", "check_new_output", "Renderer", "save_video"]


def __getattr__(name):  # lazy: moderngl / av load only when used
    if name == "Renderer":
        from .renderer import Renderer
        return Renderer
    if name == "save_video":
        from .video import save_video
        return save_video
    raise AttributeError(name)
