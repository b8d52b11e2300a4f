"""The web app in a real Chromium: upload a tampered series, see "manipulated" and the overlay."""

from __future__ import annotations

import io
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medforensics.explain.overlay import hottest_pixel
from tests.ui import CHROMEDRIVER, CHROMIUM, chromium, make_scans, running_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
        "/usr/bin/chromedriver): apt-get install chromium chromium-driver",
    ),
]

WAIT_S = 120


def test_browser_upload_shows_manipulated_and_the_overlay(tmp_path: Path) -> None:
    pytest.importorskip("selenium", reason="needs selenium (pip install 'medforensics[dev]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    scans = make_scans(tmp_path / "scans")
    with running_app(tmp_path) as url, chromium(tmp_path / "chromium-profile") as driver:
        driver.get(url)
        wait = WebDriverWait(driver, WAIT_S)
        picker = wait.until(
            lambda d: d.find_element(
                By.CSS_SELECTOR, '[data-testid="stFileUploader"] input[type="file"]'
            )
        )
        started = time.perf_counter()
        # the 12 DICOM files of the copy-move twin, sent through the real upload widget
        picker.send_keys("\n".join(str(path) for path in scans.tampered_files))
        banner = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".mf-verdict"))
        seconds = time.perf_counter() - started
        assert banner.get_attribute("data-verdict") == "manipulated"
        assert "MANIPULATED" in banner.text
        shown = re.search(r"probability of manipulation ([0-9.]+)", banner.text)
        assert shown is not None and float(shown.group(1)) >= 0.5

        def overlay(d: object) -> object:
            for container in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"]'):
                if "map on" in container.text:
                    image = container.find_element(By.TAG_NAME, "img")
                    if int(image.get_attribute("naturalWidth") or 0) > 0:
                        return image
            return False

        image = wait.until(overlay)
        with urllib.request.urlopen(image.get_attribute("src"), timeout=30) as answer:
            picture = np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"))
        assert picture.shape[:2] == (512, 512)
        assert hottest_pixel(picture) is not None  # heat colours are drawn over the slice
        wait.until(
            lambda d: d.find_elements(By.XPATH, "//*[contains(text(), 'PDF report')]")
        )  # reports written after the verdict
        shot = tmp_path / "ui-analyse-phantom.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"upload to verdict {seconds:.2f} s; screenshot {shot}")
