"""``samples.projection``: the radiograph simulator used for training images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.samples.projection import ct_projection


def test_ct_projection_makes_a_seeded_12_bit_radiograph() -> None:
    hu = chest_ct_phantom(8, 64, np.random.default_rng(4))
    ct = ImageVolume("ct", "dicom-series", "CT", hu, spacing=(5.0, 0.8, 0.8))
    dx = ct_projection(ct, np.random.default_rng(1))
    assert dx.modality == "DX" and dx.bits_stored == 12
    assert dx.shape == (1, 50, 64)  # 8 slices of 5 mm resampled to 0.8 mm pixels
    np.testing.assert_array_equal(dx.pixels, np.rint(dx.pixels))
    assert dx.pixels.min() >= 0 and dx.pixels.max() <= 4095
    # the mediastinum and spine attenuate more than the lungs beside them: brighter columns
    columns = dx.pixels[0].mean(axis=0)
    assert columns[28:36].mean() > columns[12:20].mean()
    np.testing.assert_array_equal(dx.pixels, ct_projection(ct, np.random.default_rng(1)).pixels)
    lateral = ct_projection(ct, np.random.default_rng(1), axis=2, pixel_mm=0.4)
    assert lateral.shape == (1, 100, 128) and lateral.spacing[1] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="CT volume"):
        ct_projection(dataclasses.replace(ct, modality="MR"), np.random.default_rng(0))
