"""Reading what users give: NIfTI / DICOM / zipped DICOM → validated :class:`Volume` (HU or SUVbw), cohort tables, labs.

The one cohort-table reader is :mod:`pfs_core.io.cohort`, the one lab parser :mod:`pfs_core.io.labs`;
``docs/input.md`` lists the accepted formats, SUV rules and validation rules.
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
