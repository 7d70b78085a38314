"""Lesion and organ measurement on PET/CT: ``measure_case`` → lesion table, patient features, label maps.

Layers: :mod:`.reference` (liver uptake), :mod:`.pet_lesions` (SSTR-positive, PET grid),
:mod:`.ct_lesions` (liver lesions on the CT), :mod:`.table` (rows and features), :mod:`.case`
(one PET/CT), :mod:`.output` (files); :mod:`.grids` keeps the work inside the boxes that organs and
lesions occupy. Rules and sources: docs/measure.md.
"""

from pfs_core.measure.case import Measurement, find_organs, measure_case
from pfs_core.measure.settings import MeasureSettings

__all__ = ["MeasureSettings", "Measurement", "find_organs", "measure_case"]
