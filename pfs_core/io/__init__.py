"""Image input: NIfTI / DICOM / zipped DICOM → validated :class:`Volume` in HU or SUVbw.

See ``docs/input.md`` for the accepted formats, SUV rules and validation rules.
"""

from pfs_core.io.load import PET_UNITS, PetUnits, load_ct, load_pet
from pfs_core.io.validate import check_overlap
from pfs_core.io.volume import Overlap, Volume, voxel_spacing, world_bounds, world_overlap

__all__ = [
    "PET_UNITS",
    "Overlap",
    "PetUnits",
    "Volume",
    "check_overlap",
    "load_ct",
    "load_pet",
    "voxel_spacing",
    "world_bounds",
    "world_overlap",
]
