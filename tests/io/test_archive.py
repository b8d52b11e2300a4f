"""Safe zip extraction: normal archives, path escapes, zip bombs, damaged and lying archives."""

from __future__ import annotations

import stat
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medforensics.io.archive import ZipLimits, extract_zip, member_name
from medforensics.io.types import ReadError


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Send ``tempfile.mkdtemp`` into a folder of this test, so leftovers can be seen."""
    root = tmp_path / "temp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def _refusal(path: Path, limits: ZipLimits | None = None) -> ReadError:
    with pytest.raises(ReadError) as caught, extract_zip(path, limits or ZipLimits()):
        pytest.fail("the archive should have been refused before the block ran")
    assert caught.value.path == str(path)
    return caught.value


def _set_central_and_local(
    path: Path, local_offset: int, central_offset: int, value: bytes
) -> None:
    """Overwrite one field of the only member in both its local and central headers."""
    data = bytearray(path.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + local_offset : local + local_offset + len(value)] = value
    data[central + central_offset : central + central_offset + len(value)] = value
    path.write_bytes(bytes(data))


def test_normal_archive_is_extracted_then_deleted(tmp_path: Path, temp_root: Path) -> None:
    archive = _zip(
        tmp_path / "study.zip",
        {"study/": b"", "study/a.dcm": b"first", "study/series/b.dcm": b"second"},
    )

    with extract_zip(archive) as root:
        assert root.parent == temp_root
        assert root.name.startswith("medforensics-zip-")
        assert (root / "study" / "a.dcm").read_bytes() == b"first"
        nested = root / "study" / "series" / "b.dcm"
        assert nested.read_bytes() == b"second"
        assert member_name(root, nested) == "study/series/b.dcm"

    assert not root.exists()
    assert list(temp_root.iterdir()) == []


def test_folder_is_deleted_when_the_block_raises(tmp_path: Path, temp_root: Path) -> None:
    archive = _zip(tmp_path / "study.zip", {"a.dcm": b"x"})

    with pytest.raises(RuntimeError, match="analysis failed"), extract_zip(archive) as root:
        raise RuntimeError("analysis failed")

    assert not root.exists()
    assert list(temp_root.iterdir()) == []


def test_nested_zip_is_left_as_a_file(tmp_path: Path, temp_root: Path) -> None:
    inner = _zip(tmp_path / "inner.zip", {"hidden.dcm": b"x"}).read_bytes()
    archive = _zip(tmp_path / "outer.zip", {"inner.zip": inner})

    with extract_zip(archive) as root:
        assert [entry.name for entry in root.iterdir()] == ["inner.zip"]
        assert (root / "inner.zip").read_bytes() == inner


def test_member_name_outside_the_root_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        member_name(tmp_path / "root", tmp_path / "elsewhere" / "file.dcm")


@pytest.mark.parametrize(
    "evil_name",
    ["../evil.txt", "study/../../evil.txt", "/abs/evil.txt", "C:/evil.txt", "..\\evil.txt"],
)
def test_member_escaping_the_folder_is_refused(
    tmp_path: Path, temp_root: Path, evil_name: str
) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ok.dcm": b"fine", evil_name: b"pwned"})

    error = _refusal(archive)

    assert f"'{evil_name}'" in error.message
    assert "outside the archive folder" in error.message
    assert "not extracted" in error.message
    assert list(temp_root.iterdir()) == []  # nothing extracted, not even the harmless member
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_member_is_refused(tmp_path: Path, temp_root: Path) -> None:
    link = zipfile.ZipInfo("link.dcm")
    link.create_system = 3  # Unix, so external_attr carries the file mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(link, "/etc/passwd")

    error = _refusal(archive)

    assert "'link.dcm'" in error.message and "symbolic link" in error.message
    assert list(temp_root.iterdir()) == []


def test_encrypted_member_is_refused(tmp_path: Path, temp_root: Path) -> None:
    archive = _zip(tmp_path / "secret.zip", {"secret.dcm": b"x" * 100})
    # zipfile cannot write encrypted members: set the "encrypted" flag bit by hand
    _set_central_and_local(archive, 6, 8, struct.pack("<H", 0x1))

    error = _refusal(archive)

    assert "'secret.dcm'" in error.message and "password-protected" in error.message
    assert list(temp_root.iterdir()) == []


def test_zip_bomb_member_is_refused_by_its_ratio(tmp_path: Path, temp_root: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros.raw": bytes(2 * 2**20)})

    error = _refusal(archive)  # default limits: ratio 200

    assert "'zeros.raw'" in error.message
    assert "expands" in error.message and "zip bomb" in error.message
    assert list(temp_root.iterdir()) == []


def test_member_above_the_size_limit_is_refused(tmp_path: Path, temp_root: Path) -> None:
    noise = np.random.default_rng(0).bytes(5000)
    archive = _zip(tmp_path / "big.zip", {"noise.raw": noise})

    error = _refusal(archive, ZipLimits(max_member_bytes=4096))

    assert "'noise.raw'" in error.message
    assert "4.9 KiB" in error.message and "4.0 KiB" in error.message
    assert list(temp_root.iterdir()) == []


def test_archive_above_the_total_limit_is_refused(tmp_path: Path, temp_root: Path) -> None:
    rng = np.random.default_rng(1)
    archive = _zip(tmp_path / "total.zip", {f"part{k}.raw": rng.bytes(600) for k in range(3)})

    error = _refusal(archive, ZipLimits(max_total_bytes=1000))

    assert "declares 1.8 KiB uncompressed" in error.message
    assert "limit of 1000 bytes" in error.message


def test_too_many_members_is_refused(tmp_path: Path, temp_root: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"slice{k:02d}.dcm": b"x" for k in range(11)})

    error = _refusal(archive, ZipLimits(max_members=10))

    assert "11 members" in error.message and "limit of 10" in error.message
    assert list(temp_root.iterdir()) == []


def test_duplicate_member_names_are_refused(tmp_path: Path, temp_root: Path) -> None:
    archive = tmp_path / "twice.zip"
    with zipfile.ZipFile(archive, "w") as handle, pytest.warns(UserWarning, match="Duplicate"):
        handle.writestr("a.dcm", b"shown to one viewer")
        handle.writestr("a.dcm", b"shown to another")

    error = _refusal(archive)

    assert "'a.dcm'" in error.message and "appears twice" in error.message


def test_corrupt_zip_is_a_read_error(tmp_path: Path, temp_root: Path) -> None:
    whole = _zip(tmp_path / "whole.zip", {"a.dcm": b"x" * 1000}).read_bytes()
    archive = tmp_path / "cut.zip"
    archive.write_bytes(whole[: len(whole) // 2])

    error = _refusal(archive)

    assert "cannot be read as a zip archive" in error.message
    assert str(archive) in str(error)


def test_member_larger_than_its_header_says_is_refused(tmp_path: Path, temp_root: Path) -> None:
    archive = _zip(tmp_path / "liar.zip", {"liar.dcm": np.random.default_rng(2).bytes(4000)})
    _set_central_and_local(archive, 22, 24, struct.pack("<I", 100))  # uncompressed size

    error = _refusal(archive)

    assert "'liar.dcm'" in error.message and "does not match its header" in error.message
    assert list(temp_root.iterdir()) == []  # the partly extracted folder was removed
