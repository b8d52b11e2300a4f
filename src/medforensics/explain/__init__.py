"""Explaining a detection: maps at image resolution, display windows, overlays, pictures.

* ``window``: ``display_window(volume)`` and ``to_uint8`` (window/level per modality);
* ``maps``: ``full_map(detection, shape)`` (the detector's map at image resolution) and the
  display scale of a map;
* ``overlay``: ``overlay_rgb(gray_u8, heat)`` and finding rings;
* ``render``: crops, slice strips, PNG bytes for reports;
* ``cam``: Grad-CAM / occlusion saliency for the network detectors.

``render`` (Pillow) and ``cam`` (torch) are imported only by whoever needs them.
"""

from __future__ import annotations

from medforensics.explain.maps import full_map
from medforensics.explain.overlay import overlay_rgb
from medforensics.explain.window import display_window, to_uint8

__all__ = ["display_window", "full_map", "overlay_rgb", "to_uint8"]
