"""The archive walk: lazy, grouped like the loader, stable task keys; batching; the batch page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from medforensics.archive import SeriesTask, SkippedFile, discover
from medforensics.archive.html import render_batch_html
from medforensics.archive.summary import BatchSummary
from medforensics.archive.tasks import FileStamp, make_task, pack
from tests.archive import GeneratedArchive, make_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> GeneratedArchive:
    return make_archive(tmp_path_factory.mktemp("archive") / "root", n_series=40)


def _tasks(root: Path) -> list[SeriesTask]:
    return [item for item in discover(root) if isinstance(item, SeriesTask)]


def test_every_series_and_file_becomes_one_task(archive: GeneratedArchive) -> None:
    items = list(discover(archive.root))
    tasks = [item for item in items if isinstance(item, SeriesTask)]
    skipped = [item for item in items if isinstance(item, SkippedFile)]
    assert len(tasks) == archive.tasks
    series = [t for t in tasks if t.kind == "dicom-series" and t.series_uid in archive.series_uids]
    assert sorted(t.series_uid or "" for t in series) == sorted(archive.series_uids)
    # 2, 3 or 4 slices each, all of one folder
    assert all(t.n_files == 2 + archive.series_uids.index(t.series_uid or "") % 3 for t in series)
    assert all(len({os.path.dirname(f.path) for f in t.files}) == 1 for t in series)
    assert [s.path.endswith("README.txt") for s in skipped] == [True]
    assert len({t.key for t in tasks}) == len(tasks)


def test_two_series_in_one_folder_are_two_tasks(archive: GeneratedArchive) -> None:
    by_folder: dict[str, list[SeriesTask]] = {}
    for task in _tasks(archive.root):
        if task.kind == "dicom-series":
            by_folder.setdefault(task.location, []).append(task)
    shared = {folder: tasks for folder, tasks in by_folder.items() if len(tasks) > 1}
    # series 1 joins series 0's folder, series 21 joins series 20's
    assert sorted(shared) == [
        os.path.join("patient-000", "study-0", "series-000"),
        os.path.join("patient-003", "study-1", "series-020"),
    ]
    for tasks in shared.values():
        assert len({t.series_uid for t in tasks}) == 2
        assert not set(tasks[0].paths) & set(tasks[1].paths)


def test_odd_files_stand_alone(archive: GeneratedArchive) -> None:
    alone = {Path(t.location).name: t for t in _tasks(archive.root) if t.kind == "file"}
    assert sorted(alone) == ["empty.dcm", "garbage.dcm", "photo.png", "series.zip", "vol.nii.gz"]
    assert all(t.n_files == 1 for t in alone.values())


def test_key_is_stable_and_changes_with_a_file(tmp_path: Path) -> None:
    root = make_archive(tmp_path / "small", n_series=3).root
    first = {t.location: t.key for t in _tasks(root)}
    assert first == {t.location: t.key for t in _tasks(root)}
    victim = next(root.rglob("IM00001.dcm"))
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = {t.location: t.key for t in _tasks(root)}
    changed = [loc for loc in first if first[loc] != second[loc]]
    assert changed == [os.path.relpath(victim.parent, root)]


def test_walk_streams_one_folder_at_a_time(
    archive: GeneratedArchive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: str) -> Any:
        listed.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    walk = discover(archive.root)
    first = next(item for item in walk if isinstance(item, SeriesTask))
    assert first.location == os.path.join("patient-000", "study-0", "series-000")
    # root, patient-000, study-0, series-000: nothing else was listed yet
    assert len(listed) == 4
    rest = list(walk)
    assert len(listed) > 40 and rest


def test_pack_batches_small_tasks_and_keeps_big_ones_alone() -> None:
    def task(n: int, name: str) -> SeriesTask:
        files = [FileStamp(f"/a/{name}/{k}", 10, 1) for k in range(n)]
        return make_task("/a", name, "dicom-series", files)

    tasks = [task(3, "a"), task(3, "b"), task(300, "big"), task(4, "c"), task(2, "d")]
    batches = [[t.location for t in batch] for batch in pack(tasks, batch_files=8)]
    assert batches == [["a", "b"], ["big"], ["c", "d"]]


def test_batch_page_escapes_archive_text() -> None:
    hostile = "<script>alert(1)</script>"
    summary = BatchSummary(
        run_id="r1", root=f"/data/{hostile}", detector="d", status="finished",
        started="2026-11-22T00:00:00+00:00", elapsed_s=1.0, workers=2, model={},
        this_run={"analysed": 1, "failed": 1, "skipped_done": 0, "skipped_failed": 0,
                  "duplicates": 0, "walk_problems": 0, "skipped_files": 1},
        series_per_s=2.0, tasks={"done": 1, "failed": 1, "queued": 0},
        verdicts={"authentic": 0, "inconclusive": 0, "manipulated": 1},
        top_studies=[{"study_uid": hostile, "series": 1, "flagged_series": 1,
                      "max_score": 0.9, "example": hostile}],
        top_series=[{"location": hostile, "study_uid": "1", "series_uid": "2",
                     "modality": "CT", "files": 3, "score": 0.9, "verdict": "manipulated",
                     "findings": 0}],
        errors=[{"location": hostile, "kind": "file", "error": f"{hostile} is empty"}],
        errors_total=1, skipped_files=[{"path": hostile, "reason": "not an image"}],
        exit_code=2,
    )  # fmt: skip
    page = render_batch_html(summary)
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    assert "Content-Security-Policy" in page and "http" not in page.replace("http-equiv", "")
