"""Web app: time from upload to verdict in a real browser, for a radiograph and a 64-slice series.

Starts ``medforensics ui`` on a free loopback port, drives Debian's Chromium with Selenium,
uploads each input through the page's upload widget and measures, per upload:

* upload → verdict: from handing the file(s) to the widget to the verdict banner on screen
  (transfer to the server, reading, detection, first render);
* upload → reports: until the download buttons (PDF, HTML, DICOM SR) are there.

Inputs (synthetic phantoms, made on the fly): a 512×512 DX radiograph as DICOM and as PNG, and
a 64-slice 512×512 CT series as a zip of DICOM files. The first upload of a session that loads
the detector's models is reported separately (``cold``); each input is then uploaded
``--repeat`` times in fresh browser sessions and the median reported.

python benchmarks/bench_ui.py [--repeat 3] [--detector auto] [--slices 64] [--size 512]
Writes benchmarks/out/bench_ui.json.

The same script makes the README screenshot of the app on a real scan:

python benchmarks/bench_ui.py --screenshot docs/img/ui-analyse.png --input SERIES_FOLDER
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "bench_ui.json"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 600
#: largest size of the README screenshot
SCREENSHOT_LIMIT = 300 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_app(work: Path, detector: str) -> Iterator[str]:
    """``medforensics ui`` on a free loopback port; stopped (its process group) afterwards."""
    port = free_port()
    env = {**os.environ, "MEDFORENSICS_UI_WORK_DIR": str(work / "sessions")}
    log = open(work / "ui-server.log", "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "medforensics.cli.main", "ui", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--detector", detector],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError((work / "ui-server.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer on {url}") from None
                time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
        log.close()


@contextmanager
def chromium(profile: Path, width: int = 1400, height: int = 1800) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def upload(driver: Any, url: str, files: Sequence[Path]) -> dict[str, Any]:
    """One upload in a fresh session: seconds to the verdict and to the reports, the verdict."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.05)
    picker = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="stFileUploader"] input')
    )
    started = time.perf_counter()
    picker.send_keys("\n".join(str(path) for path in files))
    banner = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".mf-verdict"))
    verdict_s = time.perf_counter() - started
    verdict = banner.get_attribute("data-verdict")
    wait.until(lambda d: d.find_elements(By.XPATH, "//*[contains(text(), 'PDF report')]"))
    return {
        "verdict_s": round(verdict_s, 3),
        "reports_s": round(time.perf_counter() - started, 3),
        "verdict": verdict,
    }


def make_inputs(folder: Path, slices: int, size: int) -> dict[str, list[Path]]:
    from PIL import Image

    from medforensics.samples import (
        chest_ct_phantom,
        radiograph_phantom,
        write_ct_series,
        write_dicom_image,
    )

    rng = np.random.default_rng(0)
    radiograph = radiograph_phantom(size, rng)
    dx = write_dicom_image(radiograph, folder / "radiograph.dcm", modality="DX")
    png = folder / "radiograph.png"
    Image.fromarray(np.clip(radiograph[0] * 16, 0, 65535).astype(np.uint16)).save(png)
    series_dir = folder / "series"
    write_ct_series(chest_ct_phantom(slices, size, rng), series_dir)
    series_zip = folder / f"ct-{slices}-slices.zip"
    with zipfile.ZipFile(series_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(series_dir.glob("*.dcm")):
            archive.write(path, path.name)
    return {
        f"radiograph {size}x{size} DX DICOM": [dx],
        f"radiograph {size}x{size} PNG (16-bit)": [png],
        f"CT {slices}x{size}x{size} series, zip of DICOM": [series_zip],
    }


def benchmark(args: argparse.Namespace) -> int:
    print(
        f"bench_ui {datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, {os.cpu_count()} "
        f"cores, load average {os.getloadavg()[0]:.1f}, detector {args.detector}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        work = Path(tmp)
        inputs = make_inputs(work, args.slices, args.size)
        sizes = {name: sum(p.stat().st_size for p in paths) for name, paths in inputs.items()}
        figures: dict[str, Any] = {}
        with running_app(work, args.detector) as url, chromium(work / "profile") as driver:
            for name, paths in inputs.items():  # first use loads the models: reported apart
                figures[name] = {"bytes": sizes[name], "cold": upload(driver, url, paths)}
            for name, paths in inputs.items():
                runs = [upload(driver, url, paths) for _ in range(args.repeat)]
                figures[name]["runs"] = runs
                figures[name]["verdict_s_median"] = statistics.median(r["verdict_s"] for r in runs)
                figures[name]["reports_s_median"] = statistics.median(r["reports_s"] for r in runs)
    print(f"{'input':46} {'MB':>6} {'cold':>7} {'verdict':>8} {'reports':>8}  verdict")
    for name, figure in figures.items():
        print(
            f"{name:46} {figure['bytes'] / 2**20:6.1f} {figure['cold']['verdict_s']:6.2f}s "
            f"{figure['verdict_s_median']:7.2f}s {figure['reports_s_median']:7.2f}s  "
            f"{figure['runs'][0]['verdict']}"
        )
    payload = {
        "benchmark": "bench_ui",
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
        "detector": args.detector,
        "repeat": args.repeat,
        "what": "seconds from handing the file(s) to the upload widget to the verdict banner "
        "(verdict_s) and to the download buttons (reports_s); medians over fresh sessions; "
        "cold = first upload of each input after the server started",
        "figures": figures,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(HERE.parent)}")
    return 0


def screenshot(args: argparse.Namespace) -> int:
    """The Analyse page on ``--input`` (a folder of DICOM files, uploaded as a zip of them),
    quantised to 128 colours and shrunk until the PNG is under 300 KB."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    source = Path(args.input)
    files = sorted(p for p in source.iterdir() if p.is_file())
    target = Path(args.screenshot)
    with tempfile.TemporaryDirectory(prefix="ui-shot-") as tmp:
        work = Path(tmp)
        series_zip = work / f"{source.name}.zip"  # one chip in the upload widget, not 64
        with zipfile.ZipFile(series_zip, "w") as archive:
            for path in files:
                archive.write(path, path.name)
        with running_app(work, args.detector) as url, chromium(work / "profile", 1280, 1500) as d:
            figure = upload(d, url, [series_zip])
            WebDriverWait(d, WAIT_S).until(
                lambda drv: drv.find_element(By.CSS_SELECTOR, '[data-testid="stImage"] img')
            )
            time.sleep(1.0)  # let the last pictures paint
            d.execute_script("window.scrollTo(0, 0)")
            raw = d.get_screenshot_as_png()
    picture = Image.open(io.BytesIO(raw)).convert("RGB")
    for width in (1280, 1100, 960, 840):
        shrunk = picture.resize(
            (width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS
        )
        buffer = io.BytesIO()
        shrunk.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            buffer, format="PNG", optimize=True
        )
        if buffer.tell() < SCREENSHOT_LIMIT:
            break
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    print(
        f"{target}: {shrunk.width}x{shrunk.height}, {buffer.tell() / 1024:.0f} KB; "
        f"{len(files)} files, verdict {figure['verdict']} after {figure['verdict_s']:.1f} s"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="Uploads per input (median).")
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--screenshot", help="Write a screenshot of the app on --input here.")
    parser.add_argument("--input", help="Folder of DICOM files for --screenshot.")
    args = parser.parse_args()
    if args.screenshot:
        if not args.input:
            parser.error("--screenshot needs --input")
        return screenshot(args)
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
