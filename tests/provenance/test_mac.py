"""The MAC byte stream: sequence, string, pixel and endianness rules (PS3.3 C.12.1.1.3.1)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from medforensics.provenance.mac import (
    element_signable,
    encode_element,
    mac_chunks,
    tag_signable,
)
from medforensics.provenance.profiles import select_tags
from tests.provenance import reencode


def test_sequences_drop_their_lengths_and_items_their_delimiters() -> None:
    ds = Dataset()
    code = Dataset()
    code.CodeValue = "T-D3000"
    ds.AnatomicRegionSequence = [code]
    encoded = encode_element(ds, Tag("AnatomicRegionSequence"))
    expected = (
        bytes.fromhex("0800 1822 5351 0000")  # tag, SQ, reserved, no length
        + bytes.fromhex("feff 00e0")  # item tag, no length
        + bytes.fromhex("0800 0001 5348 0800") + b"T-D3000 "  # CodeValue, padded
        + bytes.fromhex("feff dde0")  # sequence delimitation tag, no length
    )  # fmt: skip
    assert encoded == expected


def test_surplus_string_padding_is_dropped_as_dcmtk_does() -> None:
    ds = Dataset()
    ds[0x00081010] = RawDataElement(Tag(0x00081010), "SH", 4, b"AB  ", 0, False, True)
    assert encode_element(ds, Tag(0x00081010)) == bytes.fromhex("0800 1010 5348 0200") + b"AB"
    ds.SOPInstanceUID = "1.2.3"
    assert encode_element(ds, Tag("SOPInstanceUID")).endswith(b"1.2.3\x00")


def test_encapsulated_pixel_fragments_are_written_without_lengths() -> None:
    ds = Dataset()
    ds.add_new(0x7FE00010, "OB", encapsulate([b"abcd", b"xyz"], has_bot=False))
    ds[0x7FE00010].is_undefined_length = True
    encoded = encode_element(ds, Tag(0x7FE00010))
    assert encoded == (
        bytes.fromhex("e07f 1000 4f42 0000")
        + bytes.fromhex("feff 00e0")  # basic offset table item: empty
        + bytes.fromhex("feff 00e0") + b"abcd"
        + bytes.fromhex("feff 00e0") + b"xyz\x00"
        + bytes.fromhex("feff dde0")
    )  # fmt: skip


def test_stream_is_the_same_in_every_lossless_transfer_syntax(
    good_dicom: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(good_dicom)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "X1", "99TEST", "odd"
    ds.AnatomicRegionSequence = [code]
    ds.InstitutionName = "ODD"
    ds.save_as(tmp_path / "explicit.dcm")
    reference = pydicom.dcmread(tmp_path / "explicit.dcm")
    tags = select_tags(reference, "base")
    expected = b"".join(mac_chunks(reference, tags, None))
    for syntax in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
        copy = pydicom.dcmread(reencode(tmp_path / "explicit.dcm", tmp_path / "copy.dcm", syntax))
        assert copy.original_encoding != reference.original_encoding
        assert b"".join(mac_chunks(copy, tags, None)) == expected


def test_encoding_never_changes_the_dataset(good_dicom: Path) -> None:
    ds = pydicom.dcmread(good_dicom)
    tags = sorted(ds.keys())
    raw_before = [type(ds.get_item(tag)).__name__ for tag in tags]
    b"".join(mac_chunks(ds, select_tags(ds, "base"), None))
    assert [type(ds.get_item(tag)).__name__ for tag in tags] == raw_before
    assert "RawDataElement" in raw_before


def test_what_can_be_signed() -> None:
    assert tag_signable(Tag(0x00100010)) and tag_signable(Tag(0x7FE00010))
    for tag in (0x00020010, 0x00080000, 0x00080001, 0xFFFAFFFA, 0x4FFE0001, 0xFFFCFFFC):
        assert not tag_signable(Tag(tag))
    ds = Dataset()
    ds.add_new(0x00091001, "UN", b"\x01\x02")
    ds.PatientName = "A^B"
    assert not element_signable(ds, Tag(0x00091001))
    assert element_signable(ds, Tag(0x00100010))
    assert select_tags(ds, "base") == [Tag(0x00100010)]
