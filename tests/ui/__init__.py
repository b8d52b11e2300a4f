"""Helpers for the web app's tests: small scans as upload bytes, the app under AppTest, media.

The scans are 128×128×12 chest phantoms written as DICOM (``classical`` flags their copy-move
twins and passes the originals), a 256×256 radiograph PNG and a file that is no image at all.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, radiograph_phantom, write_ct_series
from medforensics.tamper import simulate
from medforensics.tamper.dicom_out import write_tampered

#: the fast detector the app uses in tests (no network weights to load)
TEST_DETECTOR = "classical"
SERIES_SHAPE = (12, 128, 128)
PHANTOM_SEED = ATTACK_SEED = 3


@dataclass
class Scans:
    """Files of one authentic phantom series and its copy-move twin."""

    authentic_dir: Path
    tampered_dir: Path
    authentic_zip: Path
    tampered_zip: Path
    tampered_files: list[Path]
    centre: tuple[int, int, int]


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return target


def make_scans(root: Path) -> Scans:
    """Write the authentic phantom series, its copy-move twin, and a zip of each."""
    slices, size, _ = SERIES_SHAPE
    hu = chest_ct_phantom(slices, size, np.random.default_rng(PHANTOM_SEED))
    authentic_dir = root / "authentic"
    write_ct_series(hu, authentic_dir, spacing=(2.5, 0.7, 0.7))
    volume = next(item for item in load_paths([authentic_dir]) if isinstance(item, ImageVolume))
    attacked = simulate(volume, "copy-move", ATTACK_SEED)
    tampered_dir = root / "twin"
    files = write_tampered(volume, attacked.pixels, tampered_dir)
    assert attacked.truth.centre is not None
    return Scans(
        authentic_dir,
        tampered_dir,
        zip_folder(authentic_dir, root / "authentic.zip"),
        zip_folder(tampered_dir, root / "twin.zip"),
        sorted(files),
        attacked.truth.centre,
    )


def radiograph_png(size: int = 256) -> bytes:
    from PIL import Image

    pixels = radiograph_phantom(size, np.random.default_rng(4))[0]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels / 16.0, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class MediaLog:
    """Records every file the app hands to Streamlit's media store (pictures, downloads).

    AppTest elements carry URLs; this maps them back to the bytes the browser would get.
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str | None]] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> MediaLog:
        from streamlit.runtime import memory_media_file_storage as storage

        original = storage.MemoryMediaFileStorage.load_and_get_id
        log = self

        def recording(
            self: Any, path_or_data: Any, mimetype: str, kind: Any, filename: Any = None
        ) -> str:
            file_id = original(self, path_or_data, mimetype, kind, filename)
            data = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data)
            log.files[file_id] = (
                data if isinstance(data, bytes) else data.read_bytes(),
                mimetype,
                filename,
            )
            return file_id

        monkeypatch.setattr(storage.MemoryMediaFileStorage, "load_and_get_id", recording)
        return self

    def bytes_at(self, url: str) -> bytes:
        file_id = url.rsplit("/", 1)[-1].split(".")[0]
        return self.files[file_id][0]

    def download(self, button: Any) -> tuple[bytes, str | None]:
        """The bytes and file name behind an AppTest download button."""
        file_id = button.proto.url.rsplit("/", 1)[-1].split(".")[0]
        data, _mime, name = self.files[file_id]
        return data, name


# --- AppTest helpers ----------------------------------------------------------------------


def upload(at: Any, *files: tuple[str, bytes], key: str = "analyse_upload") -> Any:
    uploader = next(u for u in at.get("file_uploader") if u.id.endswith(key) or key in u.id)
    uploader.set_value([(name, data, "application/octet-stream") for name, data in files])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def verdict_of(at: Any) -> str | None:
    for markdown in at.markdown:
        found = re.search(r'class="mf-verdict" data-verdict="([a-z ]+)"', markdown.value)
        if found:
            return found.group(1)
    return None


def viewer_image(at: Any) -> tuple[str, str]:
    """The slice viewer's picture: (url, caption)."""
    for image in at.get("image"):
        for url, caption in zip(image.value, image.captions, strict=True):
            if caption.startswith("slice "):
                return url, caption
    raise AssertionError("no viewer picture on the page")


def viewer_rgb(at: Any, media: MediaLog) -> np.ndarray:
    url, _caption = viewer_image(at)
    return np.asarray(Image.open(io.BytesIO(media.bytes_at(url))).convert("RGB"))


def widget(at: Any, kind: str, label_start: str) -> Any:
    for element in at.get(kind):
        if element.label.startswith(label_start):
            return element
    raise AssertionError(f"no {kind} labelled {label_start!r}")


def downloads(at: Any, media: MediaLog) -> dict[str, tuple[bytes, str | None]]:
    return {button.label: media.download(button) for button in at.get("download_button")}


# --- a real server and browser ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_app(
    work: Path, detector: str = TEST_DETECTOR, timeout_s: float = 90.0
) -> Iterator[str]:
    """``medforensics ui`` on a free loopback port; yields its URL, stops it (by its PID) after.

    The CLI and the Streamlit server it starts share a new process group, ended together.
    """
    port = free_port()
    env = {
        **os.environ,
        "MEDFORENSICS_UI_WORK_DIR": str(work / "sessions"),
    }
    log = open(work / "ui-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medforensics.cli.main",
            "ui",
            "--port",
            str(port),
            "--detector",
            detector,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the app exited early: {(work / 'ui-server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer on {url} within {timeout_s} s")
            time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)  # the group this test started, by its id
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        log.close()


CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Debian Chromium driven by Selenium, with its own throw-away profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*CHROME_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
