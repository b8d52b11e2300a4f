"""A private per-element digest list, so that a broken signature can name what changed.

The standard's MAC says only *whether* the signed elements changed. When medforensics signs, it
also stores, in a private block of group ``4FFD`` (private creator ``MEDFORENSICS SIGNED
DIGESTS``), the SHA-256 of each signed element's MAC encoding, linked to its signature by the
Digital Signature UID:

===========  ==  =========================================================
(4FFD,xx01)  UI  Digital Signature UID the list belongs to
(4FFD,xx02)  CS  digest algorithm (``SHA256``)
(4FFD,xx03)  AT  the tags digested, in tag order
(4FFD,xx04)  OB  the digests, concatenated in the same order
(4FFD,xx05)  OB  a signature over the list, by the same key (see ``payload``)
===========  ==  =========================================================

The block is *not* among the signature's Data Elements Signed: a private element's VR is lost
in an implicit VR transfer, and other tools (DCMTK) refuse to verify a signature that covers an
element of unknown VR. The list carries its own signature instead, made with the DICOM
signature's key, so a verifier can tell an authentic list from one altered together with the
data. Each signature gets its own block; a file signed twice carries two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydicom.datadict import add_private_dict_entries
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from medforensics.provenance.mac import element_digest

GROUP = 0x4FFD
CREATOR = "MEDFORENSICS SIGNED DIGESTS"
DIGEST_ALGORITHM = "SHA256"
_DIGEST_SIZE = 32
_ENTRIES = {
    0x01: ("UI", "1", "Signed Digests Signature UID"),
    0x02: ("CS", "1", "Signed Digests Algorithm"),
    0x03: ("AT", "1-n", "Signed Digests Tags"),
    0x04: ("OB", "1", "Signed Digests Values"),
    0x05: ("OB", "1", "Signed Digests Signature"),
}
_PAYLOAD_MAGIC = b"MEDFORENSICS SIGNED DIGESTS 1\x00"


def register_private_dictionary() -> None:
    """Tell pydicom the VRs of our block, so implicit VR files read it back correctly."""
    add_private_dict_entries(
        CREATOR,
        {(GROUP << 16) | (0x1000 + offset): (*entry, "") for offset, entry in _ENTRIES.items()},
    )


@dataclass(frozen=True)
class DigestList:
    """The per-element digests stored with one signature."""

    signature_uid: str
    tags: tuple[BaseTag, ...]
    digests: tuple[bytes, ...]
    block_tags: tuple[BaseTag, ...]
    signature: bytes = b""

    def payload(self) -> bytes:
        return payload(self.signature_uid, self.tags, self.digests)

    def changed(self, ds: Dataset) -> tuple[list[BaseTag], list[BaseTag]]:
        """(changed, removed): listed elements whose digest differs, or that are gone."""
        changed: list[BaseTag] = []
        removed: list[BaseTag] = []
        for tag, stored in zip(self.tags, self.digests, strict=True):
            if tag not in ds:
                removed.append(tag)
                continue
            try:
                now = element_digest(ds, tag, DIGEST_ALGORITHM)
            except (ValueError, KeyError):
                changed.append(tag)
                continue
            if now != stored:
                changed.append(tag)
        return changed, removed


def payload(
    uid: str, tags: tuple[BaseTag, ...] | list[BaseTag], digests: tuple[bytes, ...]
) -> bytes:
    """The bytes the list's own signature covers: UID, algorithm, tags and digests."""
    packed_tags = b"".join(
        tag.group.to_bytes(2, "little") + tag.element.to_bytes(2, "little") for tag in tags
    )
    header = _PAYLOAD_MAGIC + uid.encode("ascii") + b"\x00" + DIGEST_ALGORITHM.encode() + b"\x00"
    return header + packed_tags + b"".join(digests)


def _free_slot(ds: Dataset) -> int:
    for slot in range(0x10, 0x100):
        if Tag(GROUP, slot) not in ds:
            return slot
    raise ValueError(f"no free private block left in group {GROUP:04X}")


def add_digest_block(
    ds: Dataset,
    signature_uid: str,
    tags: list[BaseTag],
    sign: Callable[[bytes], bytes],
) -> list[BaseTag]:
    """Store the digests of ``tags`` for ``signature_uid``, signed with ``sign``.

    Returns the block's own tags.
    """
    register_private_dictionary()
    slot = _free_slot(ds)
    base = (GROUP << 16) | (slot << 8)
    digests = tuple(element_digest(ds, tag, DIGEST_ALGORITHM) for tag in tags)
    signature = sign(payload(signature_uid, tags, digests))
    ds.add_new(Tag(GROUP, slot), "LO", CREATOR)
    ds.add_new(Tag(base | 0x01), "UI", signature_uid)
    ds.add_new(Tag(base | 0x02), "CS", DIGEST_ALGORITHM)
    ds.add_new(Tag(base | 0x03), "AT", list(tags) if len(tags) != 1 else tags[0])
    ds.add_new(Tag(base | 0x04), "OB", b"".join(digests))
    ds.add_new(Tag(base | 0x05), "OB", signature + (b"\x00" if len(signature) % 2 else b""))
    return [Tag(GROUP, slot), *(Tag(base | offset) for offset in _ENTRIES)]


def read_digest_lists(ds: Dataset) -> dict[str, DigestList]:
    """Every digest list in ``ds``, by Digital Signature UID (malformed blocks are skipped)."""
    register_private_dictionary()
    lists: dict[str, DigestList] = {}
    for slot in range(0x10, 0x100):
        creator_tag = Tag(GROUP, slot)
        if creator_tag not in ds:
            continue
        try:
            if str(ds[creator_tag].value).strip() != CREATOR:
                continue
            base = (GROUP << 16) | (slot << 8)
            uid = str(ds[Tag(base | 0x01)].value)
            if str(ds[Tag(base | 0x02)].value) != DIGEST_ALGORITHM:
                continue
            tag_elem = ds[Tag(base | 0x03)]
            values = tag_elem.value if tag_elem.VM > 1 else [tag_elem.value]
            tags = tuple(Tag(t) for t in values)
            packed = bytes(ds[Tag(base | 0x04)].value)
            signature = bytes(ds[Tag(base | 0x05)].value)
        except (KeyError, TypeError, ValueError):
            continue
        if len(packed) < len(tags) * _DIGEST_SIZE:
            continue
        digests = tuple(packed[i * _DIGEST_SIZE : (i + 1) * _DIGEST_SIZE] for i in range(len(tags)))
        block = (creator_tag, *(Tag(base | offset) for offset in _ENTRIES))
        lists[uid] = DigestList(uid, tags, digests, block, signature)
    return lists
