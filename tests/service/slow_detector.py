"""A detector for service tests: takes a set time and logs every run it starts and ends.

Imported by worker processes through the ``plugins`` setting (``MEDFORENSICS_PLUGINS``).
``MEDFORENSICS_TEST_DELAY_S`` sets the seconds each analysis takes; with
``MEDFORENSICS_TEST_RUN_LOG`` set, one line per start and per end is appended there, so tests
can count how often each input was really analysed.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import ClassVar

from medforensics.detect import Detection, Detector, register_detector
from medforensics.io.types import ImageVolume

NAME = "test-slow"


class SlowDetector(Detector):
    name: ClassVar[str] = NAME

    def detect(self, volume: ImageVolume) -> Detection:
        delay = float(os.environ.get("MEDFORENSICS_TEST_DELAY_S", "1.0"))
        log = os.environ.get("MEDFORENSICS_TEST_RUN_LOG")
        label = f"{os.getpid()} {volume.pixels.shape} {float(volume.pixels.mean()):.3f}"
        if log:
            with open(log, "a") as handle:
                handle.write(f"start {label}\n")
        time.sleep(delay)
        if log:
            with open(log, "a") as handle:
                handle.write(f"end {label}\n")
        return Detection(NAME, 0.1, "authentic", notes=[f"slept {delay} s"])

    def describe(self) -> dict[str, object]:
        return {"name": NAME, "purpose": "service tests"}


# list_detectors() would import every built-in (torch included); registering twice raises
with contextlib.suppress(ValueError):
    register_detector(SlowDetector)
