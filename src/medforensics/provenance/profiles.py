"""Which data elements a signature covers: the ``base`` and ``creator`` profiles (PS3.15 C.1, C.2).

* ``base`` (Base RSA Digital Signature Profile, with ECDSA keys as later editions allow): every
  top-level data element that can be signed — patient, study, series, equipment, image and
  pixel attributes alike. Any change to any of them breaks the signature. Private attributes of
  other vendors are left out: implicit VR transfers lose their VR (they come back as UN, which
  cannot be signed), so signing them would break the signature on a lossless re-encoding.
* ``creator`` (Creator RSA Digital Signature Profile): the minimum the standard asks of the
  device that creates an instance — SOP Class/Instance UIDs, creation date/time, Study and Series
  Instance UIDs, and the General Equipment, General Image, Image Pixel, overlay, multi-frame and
  enhanced-image attributes that are present. Patient and study descriptions stay outside, so a
  site may correct demographics without breaking the creator's signature.

Pixel Data (and float pixel data, where present) is signed by both profiles.
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from medforensics.provenance.mac import element_signable

PROFILES = ("base", "creator")

#: pixel-carrying elements that every profile signs when present
PIXEL_ELEMENTS = (
    Tag(0x7FE0, 0x0010),  # Pixel Data
    Tag(0x7FE0, 0x0008),  # Float Pixel Data
    Tag(0x7FE0, 0x0009),  # Double Float Pixel Data
)

#: the Creator profile's minimum list (PS3.15 C.2), as keywords, for the modules an imaging
#: device writes: SOP common, General Equipment, General/Enhanced Image, Image Pixel, overlay,
#: graphic annotation, multi-frame functional groups, Enhanced CT/MR/XA, X-ray acquisition
_CREATOR_KEYWORDS = (
    # the SOP Class and Instance UIDs, creation date/time, Study and Series Instance UIDs
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    # General Equipment
    "Manufacturer",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "InstitutionalDepartmentName",
    "InstitutionalDepartmentTypeCodeSequence",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
    "GantryID",
    "UDISequence",
    "DeviceUID",
    "SpatialResolution",
    "DateOfLastCalibration",
    "TimeOfLastCalibration",
    "PixelPaddingValue",
    # General Image
    "InstanceNumber",
    "PatientOrientation",
    "ContentDate",
    "ContentTime",
    "ImageType",
    "AcquisitionNumber",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "ImagesInAcquisition",
    "ImageComments",
    "QualityControlImage",
    "BurnedInAnnotation",
    "RecognizableVisualFeatures",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "IconImageSequence",
    "PresentationLUTShape",
    "IrradiationEventUID",
    "RealWorldValueMappingSequence",
    "ImageLaterality",
    "AnatomicRegionSequence",
    "PrimaryAnatomicStructureSequence",
    # Image Pixel
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "PixelAspectRatio",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "ICCProfile",
    "ColorSpace",
    "PixelDataProviderURL",
    "PixelPaddingRangeLimit",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
    # Overlay Plane and Graphic Annotation
    "GraphicAnnotationSequence",
    # Multi-frame Functional Groups and the enhanced image modules
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "NumberOfFrames",
    "ConcatenationFrameOffsetNumber",
    "RepresentativeFrameNumber",
    "ConcatenationUID",
    "SOPInstanceUIDOfConcatenationSource",
    "InConcatenationNumber",
    "InConcatenationTotalNumber",
    "AcquisitionDuration",
    "ReferencedRawDataSequence",
    "ReferencedWaveformSequence",
    "ReferencedImageEvidenceSequence",
    "SourceImageEvidenceSequence",
    "ContentQualification",
    "ResonantNucleus",
    "KSpaceFiltering",
    "MagneticFieldStrength",
    "IsocenterPosition",
    "PixelPresentation",
    "VolumetricProperties",
    "VolumeBasedCalculationTechnique",
    "ComplexImageComponent",
    "AcquisitionContrast",
    # CT and X-ray acquisition values a device writes into its images
    "KVP",
    "XRayTubeCurrentInmA",
    "ExposureTimeInms",
    "ExposureInmAs",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "FrameOfReferenceUID",
    "ConvolutionKernel",
)


def _creator_tags() -> frozenset[BaseTag]:
    tags = set()
    for keyword in _CREATOR_KEYWORDS:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(f"{keyword} is not a DICOM keyword")
        tags.add(Tag(tag))
    # Overlay Plane (60xx,eeee) and retired Curve (50xx,eeee) groups are matched by group
    return frozenset(tags)


CREATOR_TAGS = _creator_tags()


def _in_creator_profile(tag: BaseTag) -> bool:
    return tag in CREATOR_TAGS or (tag.group & 0xFF01) in (0x5000, 0x6000)


def select_tags(ds: Dataset, profile: str) -> list[BaseTag]:
    """The top-level elements of ``ds`` that ``profile`` signs, in tag order.

    Raises:
        ValueError: for an unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown signature profile {profile!r}; choose one of {PROFILES}")
    chosen: list[BaseTag] = []
    for tag in sorted(ds.keys()):
        if tag.is_private or not element_signable(ds, tag):
            continue
        if profile == "base" or _in_creator_profile(tag) or tag in PIXEL_ELEMENTS:
            chosen.append(tag)
    return chosen
