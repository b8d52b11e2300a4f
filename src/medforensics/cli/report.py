"""``medforensics report``: HTML/PDF/DICOM reports for the results of an earlier scan.

The scan JSON holds scores and findings but not the detector's maps, so each result's input is
read again, the volume the result was about is found (by SeriesInstanceUID, else by location),
and the detector runs again. When the regenerated score differs from the JSON's, the report says
so. A result that cannot be reported is named with its reason; the others still get reports.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from medforensics.cli.output import stderr, stdout
from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume, LoadError
from medforensics.scan import EXIT_AUTHENTIC, EXIT_ERROR, analyse_volume, result_of


class ReportInputError(ValueError):
    """The JSON given to ``report`` cannot be used; the message says why."""


@dataclass
class Pending:
    """A result of the JSON still waiting for its report."""

    number: int
    entry: dict[str, Any]
    done: bool = False


def read_results(path: Path) -> list[dict[str, Any]]:
    """The results in a scan JSON (``results``) or in one report's evidence JSON (``result``)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ReportInputError(f"{path}: is not valid JSON ({exc})") from exc
    if isinstance(payload, dict) and isinstance(payload.get("results"), list):
        results = payload["results"]
    elif isinstance(payload, dict) and isinstance(payload.get("result"), dict):
        results = [payload["result"]]
    else:
        raise ReportInputError(
            f"{path}: holds no scan results (expected the JSON written by "
            "'medforensics scan --json FILE', with a 'results' list)"
        )
    bad = [i for i, r in enumerate(results, 1) if not isinstance(r, dict) or "input" not in r]
    if bad:
        raise ReportInputError(f"{path}: result(s) {bad} have no 'input'; is this a scan JSON?")
    return results


#: finding kinds only the ``auto`` detector adds to a pixel detector's answer
_AUTO_ONLY_KINDS = {"metadata", "signature"}


def detector_name(entry: dict[str, Any], override: str | None) -> str:
    """The registry name to re-run: ``override``, else the one the result names.

    ``auto`` names the model(s) that answered, not itself: ``a+b`` (two models combined) or a
    pixel detector whose findings include header or signature checks both came from ``auto``.
    """
    if override:
        return override
    named = str(entry.get("detector") or "auto")
    kinds = {f.get("kind") for f in entry.get("findings") or [] if isinstance(f, dict)}
    # (the header and signature checkers, run on their own, give such findings themselves)
    if "+" in named or (named not in ("metadata", "signature") and kinds & _AUTO_ONLY_KINDS):
        return "auto"
    return named


def _same_place(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    try:
        return Path(a.split("!")[0]).resolve() == Path(b.split("!")[0]).resolve() and (
            a.partition("!")[2] == b.partition("!")[2]
        )
    except OSError:
        return False


def matches(entry: dict[str, Any], volume: ImageVolume) -> bool:
    """Whether ``volume`` is the one ``entry`` was about."""
    uid = entry.get("series_instance_uid")
    if uid:
        return volume.series_uid == uid
    location = result_of(volume, Detection.not_assessed("match", "")).location
    return _same_place(entry.get("location"), location) or entry.get("location") is None


def _input_path(raw: str, json_path: Path) -> str:
    """``raw`` as given, or relative to the JSON's folder when it only exists there."""
    if Path(raw).exists() or Path(raw).is_absolute():
        return raw
    beside = json_path.parent / raw
    return str(beside) if beside.exists() else raw


class _Reporter:
    def __init__(
        self, json_path: Path, out: Path, include_phi: bool, override: str | None, dicom: bool
    ) -> None:
        self.json_path = json_path
        self.out = out
        self.include_phi = include_phi
        self.override = override
        self.dicom = dicom
        self.detectors: dict[str, Detector] = {}
        self.failures: list[str] = []
        self.written = 0

    def fail(self, entry: dict[str, Any], reason: str) -> None:
        where = entry.get("location") or entry.get("input")
        self.failures.append(f"{where}: {reason}")
        stderr.print(f"[red]error:[/] {escape(f'{where}: {reason}')}", soft_wrap=True)

    def detector(self, name: str) -> Detector:
        if name not in self.detectors:
            from medforensics.detect import create_detector

            self.detectors[name] = create_detector(name)
        return self.detectors[name]

    def report_volume(self, volume: ImageVolume, item: Pending) -> None:
        from medforensics.report.build import TimedDetector, write_reports

        entry = item.entry
        name = detector_name(entry, self.override)
        try:
            detector = self.detector(name)
        except Exception as exc:
            self.fail(entry, f"detector {name!r} cannot be loaded ({exc})")
            return
        timed = TimedDetector(detector)
        try:
            detection, result = analyse_volume(volume, timed)
        except Exception as exc:
            self.fail(entry, f"analysis failed ({type(exc).__name__}: {exc})")
            return
        notes = [f"regenerated from {self.json_path} (result {item.number}) with {name}"]
        if entry.get("shape") and list(entry["shape"]) != list(volume.shape):
            notes.append(f"the image is now {list(volume.shape)}; the JSON says {entry['shape']}")
        try:
            files = write_reports(
                volume,
                detection,
                result,
                detector,
                self.out,
                include_phi=self.include_phi,
                dicom=self.dicom,
                timing=timed.timing,
                previous=entry,
                notes=notes,
            )
        except Exception as exc:
            self.fail(entry, f"reports could not be written ({type(exc).__name__}: {exc})")
            return
        self.written += 1
        outputs = [p.name for p in (files.html, files.pdf, files.overlay_png) if p is not None]
        stdout.print(
            escape(f"{result.location}: {', '.join(outputs)}")
            + f" [dim]({escape(files.json.name)})[/]",
            soft_wrap=True,
        )
        for note in files.notes[1:]:
            stderr.print(f"[yellow]note:[/] {escape(f'{result.location}: {note}')}", soft_wrap=True)

    def report_input(self, raw_input: str, items: list[Pending]) -> None:
        path = _input_path(raw_input, self.json_path)
        if not Path(path).exists():
            for item in items:
                self.fail(item.entry, f"the input {raw_input} does not exist (any more)")
            return
        load_errors: list[LoadError] = []
        for loaded in load_paths([path]):
            if isinstance(loaded, LoadError):
                load_errors.append(loaded)
                continue
            if not isinstance(loaded, ImageVolume):
                continue
            for item in items:
                if not item.done and matches(item.entry, loaded):
                    item.done = True
                    self.report_volume(loaded, item)
                    break
        for item in items:
            if item.done:
                continue
            if load_errors:
                self.fail(item.entry, "; ".join(str(error) for error in load_errors))
            else:
                uid = item.entry.get("series_instance_uid")
                what = f"series {uid}" if uid else "the image"
                self.fail(item.entry, f"{what} was not found in {raw_input} any more")


def report_command(
    result_json: Path = typer.Argument(
        ..., help="JSON written by 'medforensics scan --json FILE' (or one report's .json)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the reports (created)."),
    include_phi: bool = typer.Option(
        False, "--include-phi", help="Show patient name, ID, birth date, accession, institution."
    ),
    detector: str | None = typer.Option(
        None, "--detector", help="Re-run this detector instead of the one each result names."
    ),
    dicom: bool = typer.Option(
        True, "--dicom/--no-dicom", help="Also write DICOM SR/SEG/SC/PDF for DICOM inputs."
    ),
) -> None:
    """Write HTML, PDF, overlay PNG, evidence JSON and DICOM results for an earlier scan.

    Exit 0: every result got its reports; 2: some could not (each is named on stderr).
    """
    try:
        results = read_results(result_json)
    except ReportInputError as exc:
        stderr.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from exc
    reporter = _Reporter(result_json, out, include_phi, detector, dicom)
    by_input: dict[str, list[Pending]] = defaultdict(list)
    for number, entry in enumerate(results, start=1):
        if entry.get("error"):
            reporter.fail(
                entry,
                f"the scan could not analyse it, so there is nothing to report ({entry['error']})",
            )
            continue
        by_input[str(entry["input"])].append(Pending(number, entry))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        stderr.print(
            f"[red]error:[/] {escape(f'{out}: cannot create the report folder ({exc})')}",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR) from exc
    for raw_input, items in by_input.items():
        reporter.report_input(raw_input, items)
    stderr.print(
        escape(
            f"{reporter.written} of {len(results)} result(s) reported in {out}"
            + (f"; {len(reporter.failures)} could not be" if reporter.failures else "")
        ),
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_ERROR if reporter.failures else EXIT_AUTHENTIC)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
