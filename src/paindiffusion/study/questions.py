"""What a participant is asked before the trials, and the groups the analysis reports them in."""

from __future__ import annotations

ROLES = ("physician", "nurse", "paramedic", "student (medicine, nursing or allied health)",
         "simulation educator or technician", "researcher", "other")
FREQUENCIES = ("never", "less than once a month", "monthly", "weekly", "daily")  # "how often do you see patients in pain?"
MAX_YEARS = 70.0
EXPERIENCE_BANDS = ((0, 5, "under 5 years"), (5, 15, "5-14 years"), (15, MAX_YEARS + 1, "15 years or more"))

CONSENT = (
    "This study shows short videos of faces reacting to heat applied to a patient's arm. Some of the faces are "
    "recordings, some are made by a computer. You will answer a few questions about yourself and then judge the "
    "videos: which face is real, how strongly a face reacts, how different three faces are, and which face you "
    "would rather use for teaching.",
    "It takes about 10 to 15 minutes. Your answers are stored on this computer only, under a participant number, "
    "with your role, years of clinical experience and how often you see patients in pain; no name, no address, no "
    "recording of you. You may stop at any time; answers given until then are kept unless you ask the researcher "
    "to delete them.",
)
MAX_CONSENT_CHARS = 20_000


def experience_band(years: float | None) -> str:
    if years is None:
        return "not given"
    return next(name for lo, hi, name in EXPERIENCE_BANDS if lo <= years < hi)


def valid_answers(role, years, frequency) -> str | None:
    """None if the participant questions are answered validly, else what is wrong (one line)."""
    if role not in ROLES:
        return "role must be one of: " + "; ".join(ROLES)
    if isinstance(years, bool) or not isinstance(years, (int, float)) or not 0 <= years <= MAX_YEARS:
        return f"years of clinical experience must be a number from 0 to {MAX_YEARS:g}"
    if frequency not in FREQUENCIES:
        return "how often you see patients in pain must be one of: " + "; ".join(FREQUENCIES)
    return None
