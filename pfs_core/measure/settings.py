"""The delineation rule's parameters, in one frozen record saved with every measurement.

Chosen on development seeds only (``benchmarks/measure_truth.py`` on seeds 101, 105 and 106; docs/measure.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from pfs_core.errors import UsageError


@dataclass(frozen=True)
class MeasureSettings:
    """How lesions are delineated (SUV in SUVbw, HU, lengths in mm, volumes in mL).

    SSTR-positive lesions (PET grid): voxels above the liver ("above liver" = Krenning 3-4,
    the SSTR-positive definition of Zidan et al.), at least ``detect_sd`` robust SDs of the liver
    and ``detect_min_ratio`` × the liver reference, outside the physiological organs, split at
    separate uptake maxima, each bounded by a background-corrected ``iso_fraction`` isocontour of
    its own SUVmax (45 % of SUVmax: Filizoglu et al., Nucl Med Commun 2024; Siegmund et al. 2025).
    SSTR-negative lesions (CT grid, liver only): focal hypodensity at least ``cold_min_hu`` and
    ``cold_sd`` SDs below the liver parenchyma (grown into its fainter rim, ``cold_grow_*``), a fainter
    hypodensity where the PET is cold too (``cold_both_*``), or a photopenic defect of the liver on the PET
    (``photopenic_*``), with PET uptake at or below the liver.
    """

    detect_smooth_mm: float = 6.0  # FWHM of the smoothing before detection (PET noise)
    detect_sd: float = 3.0
    grow_mm: float = 12.0  # seeds grow this far into unsmoothed voxels above the threshold (2 x smoothing FWHM)
    detect_min_ratio: float = 1.3
    iso_fraction: float = 0.45
    split_depth_ratio: float = 0.5  # a separate maximum must rise this × liver SUV above the saddle
    min_volume_ml: float = 0.3
    pet_fwhm_mm: float = 7.0  # PET resolution assumed for the spill-over of hot organs
    organ_margin_mm: float = 8.0  # around spleen, kidneys, bladder, adrenals: nothing is counted there
    pancreas_min_ratio: float = 2.0  # pancreas: only uptake above this × liver (uncinate process lower)
    liver_erosion_mm: float = 10.0  # liver reference ≥ 1 cm from the liver's edge (spill-over)
    ct_smooth_mm: float = 3.0
    cold_min_hu: float = 15.0
    cold_sd: float = 2.5
    cold_min_volume_ml: float = 0.5
    # SSTR-negative (Krenning ≤ 2: uptake at or below the liver): the ``cold_quantile`` percentile of the
    # lesion's uptake at most ``cold_max_ratio`` × liver plus ``cold_noise_sd`` liver-noise SDs. The PET's blur
    # mixes a liver lesion's uptake with the liver's, so a lesion measured at the liver's level may be a faint
    # SSTR-positive one (true ratio 1.2-1.5) pulled down; since measurement 1.2 a lesion is called negative only
    # when its median uptake lies 3 noise SDs below the liver (1.1: the 75th percentile up to 2 SDs above it,
    # which called most faint positive lesions negative; docs/measure.md, development seed 101).
    cold_quantile: float = 50.0
    cold_max_ratio: float = 1.0
    cold_noise_sd: float = -3.0
    # a cold region whose outer shell lies this much on one PET-found lesion is that lesion's necrotic core
    # (1.1: 0.25, which left a third of the cores of hot lesions as "SSTR-negative" lesions)
    core_min_contact: float = 0.1
    # With organs from the organ network (4-mm grid), CT-found liver lesions are searched only this deep inside
    # its liver (two of its voxels; development seed 101): where its mask runs past the true edge, the
    # fat-mixed rim looks like hypodense lesions (docs/measure.md). Provided masks are trusted to their edge.
    network_edge_mm: float = 8.0
    # With the organ network's organs, physiological uptake is kept this far off them (``organ_margin_mm`` plus one
    # 4-mm network voxel): its organ edges may fall a voxel short, and kidney uptake blurred past them was counted
    # as lesions in the neighbouring bowel (development seed 101: 1.24 false-positive lesions per patient at 8 mm,
    # 0.54 at 12 mm, 0.43 at 16 mm; lesion sensitivity 0.949, 0.946, 0.940; docs/measure.md).
    network_organ_margin_mm: float = 12.0
    # SSTR-negative liver lesions that the CT does not show as hypodense (iso- or hyperenhancing on a
    # portal-venous CT) are photopenic on the PET: smoothed uptake below this × the liver reference, at least
    # ``liver_erosion_mm`` inside the liver, over at least ``photopenic_min_ml`` (a lesion of ~1.6 cm: smaller
    # ones are filled in by the PET's blur), and not brighter on the CT than the liver by more than
    # ``photopenic_max_hu_above`` (contrast-filled hepatic vessels are cold on the PET too).
    photopenic_ratio: float = 0.5
    photopenic_min_ml: float = 2.0
    photopenic_max_hu_above: float = 30.0
    # Since measurement 1.3, hypodense liver lesions of at least ``cold_min_volume_ml`` grow into their weakly
    # hypodense rims where the PET is not above the liver (hysteresis, ``ct_lesions.grow_cold``): voxels at least
    # ``cold_grow_hu``, ``cold_grow_sd`` SDs and ``cold_grow_depth`` × the lesion's own depth below the parenchyma,
    # uptake at most ``cold_grow_max_ratio`` × liver, within ``cold_grow_mm`` (0: no growth). Half the depth is the
    # edge of a uniform lesion on the smoothed CT: on the phantoms no lesion is measured further from its true volume
    # than with 1.2, where a fixed 8 HU measured small dark ones at up to 2.2 × (benchmarks/cold_lesion_phantoms.py).
    # And regions only ``cold_both_hu`` (and ``cold_grow_sd`` SDs) below the parenchyma are candidates where the PET,
    # ``cold_both_inside_mm`` inside the liver, lies below the SSTR-negative threshold too (0: off). Development seed
    # 101 (400 patients): SSTR-negative volume Spearman 0.476 -> 0.552, paired +0.076 [-0.002, 0.178]; sensitivity
    # for CT-visible SSTR-negative lesions 0.615 -> 0.692; false positives 0.163 -> 0.168 (5 HU: 0.207; docs/measure.md).
    cold_grow_hu: float = 8.0
    cold_grow_sd: float = 1.0
    cold_grow_depth: float = 0.5
    cold_grow_max_ratio: float = 1.0
    cold_grow_mm: float = 6.0
    cold_both_hu: float = 8.0
    cold_both_inside_mm: float = 5.0  # nearer the liver's edge the PET's blur mixes in the surroundings

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


#: The settings of measurement 1.2 (before the rim growth and the lesions cold on both CT and PET of 1.3).
MEASURE_1_2 = MeasureSettings(cold_grow_mm=0.0, cold_both_hu=0.0)

#: The settings of measurement 1.1 (before the SSTR-negative rule of 1.2), which bundles trained before 1.2 read.
#: It keeps 1.2's edge rule for the organ network's organs: that case never occurred in their training (masks
#: given), and the rule removes rim artefacts the training data did not have (docs/models.md).
MEASURE_1_1 = replace(MEASURE_1_2, cold_quantile=75.0, cold_noise_sd=2.0, core_min_contact=0.25)

#: The measurements a training can ask for (``TrainConfig.measurement``), by version.
MEASUREMENTS: dict[str, MeasureSettings] = {"1.1": MEASURE_1_1, "1.2": MEASURE_1_2, "1.3": MeasureSettings()}


def stored_settings(stored: dict[str, Any]) -> MeasureSettings:
    """The settings a bundle or a results file recorded. A field it lacks was added later, and takes the value
    that keeps the measurement as it was then (measurement 1.2's: no rim growth, no faint lesions cold on both)."""
    return replace(MEASURE_1_2, **stored)


def settings_of(version: str) -> MeasureSettings:
    """The settings of measurement ``version``; an unknown one is a usage error naming the known ones."""
    if version not in MEASUREMENTS:
        raise UsageError(f"train config: measurement {version!r} is not known; use one of "
                         f"{', '.join(sorted(MEASUREMENTS))}")
    return MEASUREMENTS[version]
