"""The byte stream a DICOM digital signature's MAC is computed over (PS3.3 C.12.1.1.3.1).

The signed data elements are encoded in the MAC Calculation Transfer Syntax (explicit VR little
endian, or for encapsulated pixel data the file's own compressed syntax), in tag order, with the
conventions DCMTK's ``dcmsign`` uses, so that signatures interoperate byte for byte:

* an ordinary element is written exactly as in an explicit VR little endian file: tag, VR,
  (reserved bytes,) length, value padded to even length;
* a sequence is written as its tag and VR (plus the two reserved bytes) **without** its length;
  each item as the item tag **without** its length, followed by all of its elements; no item
  delimiter; and a sequence delimitation tag (FFFE,E0DD) **without** its length at the end;
* encapsulated pixel data likewise: tag, ``OB``, reserved bytes, then each fragment (the basic
  offset table included) as the item tag and the fragment bytes without the length, then
  (FFFE,E0DD);
* string values drop surplus trailing padding (spaces, NUL for UI) and are padded to even
  length again, as DCMTK does when it reads a value;
* values of files stored big endian are swapped to little endian (OW/OF/OL/OD/OV words too).

The MAC then continues with the signature's own item in the Digital Signatures Sequence: all of
its elements except Certificate of Signer, Signature, Certified Timestamp Type and Certified
Timestamp.

Values are taken from the file's raw bytes where pydicom still holds them, so that a file read
and written again without changes encodes to the same stream, and the dataset passed in is never
modified.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ExplicitVRLittleEndian

PIXEL_DATA = Tag(0x7FE0, 0x0010)
DIGITAL_SIGNATURES_SEQUENCE = Tag(0xFFFA, 0xFFFA)
MAC_PARAMETERS_SEQUENCE = Tag(0x4FFE, 0x0001)
#: elements of a Digital Signatures Sequence item that the MAC leaves out
SIGNATURE_ITEM_EXCLUDED = frozenset(
    {
        Tag(0x0400, 0x0115),  # Certificate of Signer
        Tag(0x0400, 0x0120),  # Signature
        Tag(0x0400, 0x0305),  # Certified Timestamp Type
        Tag(0x0400, 0x0310),  # Certified Timestamp
    }
)
#: MAC Algorithm defined terms -> hashlib names
MAC_ALGORITHMS = {
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
    "SHA1": "sha1",
    "MD5": "md5",
    "RIPEMD160": "ripemd160",
}
#: the MAC Calculation Transfer Syntax for native (uncompressed) pixel data
MAC_TRANSFER_SYNTAX = UID(ExplicitVRLittleEndian)

_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0"
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "LO", "LT", "PN", "SH", "ST", "UC"}
    | {"UR", "UT"}
)
_WORD_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class MacError(ValueError):
    """A data element cannot be encoded for a MAC; the message is for people."""


def tag_signable(tag: BaseTag) -> bool:
    """Whether a tag may appear in Data Elements Signed at all (PS3.3 C.12.1.1.3.1.1)."""
    group, element = tag.group, tag.element
    if element == 0 or group < 0x0008 or group == 0xFFFA:
        return False
    return tag not in (Tag(0x0008, 0x0001), MAC_PARAMETERS_SEQUENCE, Tag(0xFFFC, 0xFFFC))


def element_signable(ds: Dataset, tag: BaseTag) -> bool:
    """A present element that can be signed: signable tag, known VR, no UN inside sequences."""
    if not tag_signable(tag) or tag not in ds:
        return False
    return not _unknown_vr(ds, tag)


def _unknown_vr(ds: Dataset, tag: BaseTag) -> bool:
    """Stored as UN (even where pydicom knows better), or a sequence holding such an element.

    DCMTK keeps UN as read, so an element stored as UN cannot be signed by either tool.
    """
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement) and raw.VR == "UN":
        return True
    elem = _element(ds, tag)
    if elem.VR == "UN":
        return True
    if elem.VR == "SQ":
        return any(_unknown_vr(item, sub) for item in elem.value for sub in sorted(item.keys()))
    return False


def new_hash(algorithm: str) -> hashlib._Hash:
    """A hashlib object for a MAC Algorithm defined term (``SHA256``...)."""
    try:
        return hashlib.new(MAC_ALGORITHMS[algorithm])
    except KeyError:
        known = ", ".join(MAC_ALGORITHMS)
        raise MacError(f"unknown MAC algorithm {algorithm!r} (known: {known})") from None
    except ValueError as exc:  # RIPEMD160 where OpenSSL lacks its legacy provider
        raise MacError(f"MAC algorithm {algorithm} is not available here: {exc}") from None


def little_endian_source(ds: Dataset) -> bool:
    """Whether ``ds`` was read from (or will be written as) a little endian encoding."""
    encoding = ds.original_encoding[1]
    if encoding is None:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        return syntax != "1.2.840.10008.1.2.2"
    return bool(encoding)


def mac_chunks(
    ds: Dataset, tags: Iterable[BaseTag], signature_item: Dataset | None
) -> Iterator[bytes]:
    """The MAC byte stream, one chunk per element: signed elements, then the signature item.

    Tags absent from ``ds`` are skipped (their absence changes the MAC); the order is tag order,
    whatever the order of ``tags``.
    """
    little = little_endian_source(ds)
    for tag in sorted({Tag(t) for t in tags}):
        if tag in ds:
            yield encode_element(ds, tag, little)
    if signature_item is not None:
        for tag in sorted(signature_item.keys()):
            if tag not in SIGNATURE_ITEM_EXCLUDED:
                yield encode_element(signature_item, tag, little)


def mac_digest(
    ds: Dataset, tags: Iterable[BaseTag], signature_item: Dataset | None, algorithm: str
) -> bytes:
    """The MAC (a message digest) over the signed elements and the signature item."""
    digest = new_hash(algorithm)
    for chunk in mac_chunks(ds, tags, signature_item):
        digest.update(chunk)
    return digest.digest()


def element_digest(ds: Dataset, tag: BaseTag, algorithm: str = "SHA256") -> bytes:
    """Digest of one element's MAC encoding: what the private per-element digest list stores."""
    digest = new_hash(algorithm)
    digest.update(encode_element(ds, Tag(tag), little_endian_source(ds)))
    return digest.digest()


def encode_element(
    ds: Dataset, tag: BaseTag, little_endian: bool = True, ancestors: tuple[Dataset, ...] = ()
) -> bytes:
    """One element of ``ds`` in the signature encoding (see the module docstring)."""
    raw = ds.get_item(tag)
    elem = _element(ds, tag)
    if elem.VR == "UN" or (isinstance(raw, RawDataElement) and raw.VR == "UN"):
        raise MacError(
            f"element {_tag_text(tag)} has an unknown VR (UN): it cannot be encoded for a "
            "signature (was the file passed through an implicit VR transfer syntax?)"
        )
    tag_bytes = _tag_bytes(tag)
    if elem.VR == "SQ":
        out = bytearray(tag_bytes + b"SQ\x00\x00")
        for item in elem.value:
            out += _ITEM
            for sub in sorted(item.keys()):
                out += encode_element(item, sub, little_endian, (*ancestors, ds))
        out += _SEQUENCE_END
        return bytes(out)
    if tag == PIXEL_DATA and elem.is_undefined_length:
        return _encapsulated(tag_bytes, elem.value)
    if elem.VR in _TEXT_VRS:
        return _text(tag_bytes, elem, raw)
    return _binary(elem, ds, little_endian, ancestors)


def _element(ds: Dataset, tag: BaseTag) -> DataElement:
    """The element at ``tag`` as a DataElement, without converting it inside ``ds``."""
    item = ds.get_item(tag)
    if isinstance(item, RawDataElement):
        return convert_raw_data_element(item, encoding=ds._character_set, ds=ds)
    if item is None:
        raise KeyError(tag)
    return item


def _tag_bytes(tag: BaseTag) -> bytes:
    return tag.group.to_bytes(2, "little") + tag.element.to_bytes(2, "little")


def _tag_text(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def _text(tag_bytes: bytes, elem: DataElement, raw: object) -> bytes:
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes | bytearray):
        value = bytes(raw.value)
    else:
        value = _written_value(elem)
    pad = b"\x00" if elem.VR == "UI" else b" "
    value = value.rstrip(pad)
    if len(value) % 2:
        value += pad
    return _explicit_header(tag_bytes, elem.VR, len(value)) + value


def _binary(
    elem: DataElement, ds: Dataset, little_endian: bool, ancestors: tuple[Dataset, ...]
) -> bytes:
    elem = copy.copy(elem)
    if " or " in elem.VR:
        corrected = correct_ambiguous_vr_element(elem, ds, True, list(ancestors) or None)
        elem = corrected  # type: ignore[assignment]
        if " or " in elem.VR:
            raise MacError(f"cannot resolve the VR of element {_tag_text(elem.tag)} ({elem.VR})")
    if not little_endian and elem.VR in _WORD_SIZE and isinstance(elem.value, bytes | bytearray):
        width = _WORD_SIZE[elem.VR]
        words = np.frombuffer(bytes(elem.value), dtype=f">u{width}")
        elem.value = words.astype(f"<u{width}").tobytes()
    stream = DicomBytesIO()
    stream.is_little_endian = True
    stream.is_implicit_VR = False
    write_data_element(stream, elem)
    return stream.getvalue()


def _written_value(elem: DataElement) -> bytes:
    """The value bytes pydicom writes for a (text) element."""
    stream = DicomBytesIO()
    stream.is_little_endian = True
    stream.is_implicit_VR = False
    write_data_element(stream, elem)
    data = stream.getvalue()
    return data[12:] if elem.VR in ("UC", "UR", "UT") else data[8:]


def _explicit_header(tag_bytes: bytes, vr: str, length: int) -> bytes:
    if vr in ("UC", "UR", "UT", "OB", "OW", "OF", "OL", "OD", "OV", "SQ", "UN", "SV", "UV"):
        return tag_bytes + vr.encode() + b"\x00\x00" + length.to_bytes(4, "little")
    if length > 0xFFFF:
        raise MacError(f"value of {vr} element too long for explicit VR encoding ({length})")
    return tag_bytes + vr.encode() + length.to_bytes(2, "little")


def _encapsulated(tag_bytes: bytes, value: bytes) -> bytes:
    out = bytearray(tag_bytes + b"OB\x00\x00")
    offset = 0
    while offset + 8 <= len(value):
        marker = value[offset : offset + 4]
        if marker == _SEQUENCE_END:
            break
        if marker != _ITEM:
            raise MacError("encapsulated Pixel Data is not a sequence of items")
        length = int.from_bytes(value[offset + 4 : offset + 8], "little")
        fragment = value[offset + 8 : offset + 8 + length]
        out += _ITEM + fragment + (b"\x00" if len(fragment) % 2 else b"")
        offset += 8 + length
    out += _SEQUENCE_END
    return bytes(out)
