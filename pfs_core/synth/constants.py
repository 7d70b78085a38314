"""Fixed codes and tissue values of the cohort simulator (version-bumped on any change).

Organ label codes (``<id>_organs.nii.gz``, uint8, CT grid) are :data:`ORGAN_LABELS`.
CT attenuation is in Hounsfield units (HU), PET uptake in body-weight SUV (SUVbw).
"""

from __future__ import annotations

SIMULATOR_VERSION = "2.1.0"  # 2.1.0: organ masks in the organ codes of measurement, cohort.csv column "organs"

# Organ label map codes (uint8). 0 is air outside the body.
ORGAN_LABELS: dict[int, str] = {
    0: "air",
    1: "soft_tissue",  # muscle, abdominal wall, intervertebral discs, spinal canal, other soft tissue
    2: "lung",
    3: "liver",
    4: "spleen",
    5: "kidney",  # includes the renal pelvis (urine)
    6: "bone",  # vertebrae, ribs, pelvis (cortical rim + cancellous interior)
    7: "bladder",
    8: "adrenal",
    9: "pancreas",
    10: "bowel",  # small bowel, colon and stomach
    11: "fat",  # subcutaneous and visceral fat
    12: "heart_vessels",  # heart and aorta (blood pool)
}
LABEL = {name: code for code, name in ORGAN_LABELS.items()}

# CT phases of the simulated PET/CT (``render(..., contrast=...)``): portal-venous contrast-enhanced
# (the usual diagnostic PET/CT protocol, default) or unenhanced.
CONTRAST_PHASES: tuple[str, ...] = ("portal_venous", "none")
# Anatomy of the simulated bodies: the standard population, or "varied" (kidneys and spleen moved and
# scaled over a wider range, for training the organ network so that it reads organs, not positions).
ANATOMY_MODES: tuple[str, ...] = ("standard", "varied")

# Typical unenhanced CT attenuation per tissue (HU); per-patient jitter is added (see imaging.py).
TISSUE_HU: dict[str, float] = {
    "air": -1000.0,
    "soft_tissue": 45.0,
    "lung": -850.0,
    "liver": 60.0,
    "spleen": 45.0,
    "kidney": 35.0,  # medulla and (below) cortex are alike without contrast
    "kidney_cortex": 35.0,
    "bone_cancellous": 250.0,
    "bone_cortical": 800.0,
    "bladder": 6.0,
    "adrenal": 30.0,
    "pancreas": 40.0,
    "bowel": 25.0,
    "fat": -100.0,
    "heart_vessels": 40.0,
    "urine": 8.0,
    "csf": 12.0,
    "disc": 85.0,
    "bowel_gas": -850.0,
}

# Portal-venous phase (~70 s after an iodinated bolus) per tissue (HU), typical values. imaging.py
# scales each enhancement (value minus TISSUE_HU) per patient (cardiac output, dose per kg, timing).
# Urine is unenhanced in this phase (no excretion yet); fat, bone, CSF and gas do not enhance.
# "bowel" is the enhancing bowel wall (the contents keep their unenhanced values); "kidney" is
# the medulla, "kidney_cortex" the renal cortex. Sources: docs/simulator.md.
TISSUE_HU_PV: dict[str, float] = {
    **TISSUE_HU,
    "soft_tissue": 60.0,  # muscle 55-65
    "lung": -840.0,
    "liver": 112.0,  # 100-125 (enhancement ~50 HU)
    "spleen": 115.0,  # 105-125, homogeneous in this phase
    "kidney": 145.0,  # medulla
    "kidney_cortex": 185.0,  # parenchyma 150-200
    "adrenal": 70.0,
    "pancreas": 100.0,  # 90-110
    "bowel": 95.0,  # enhancing wall
    "heart_vessels": 160.0,  # aorta / blood pool 140-180
}

# Physiological SSTR-PET uptake ranges per tissue (SUVbw, uniform draw per patient).
TISSUE_SUV: dict[str, tuple[float, float]] = {
    "soft_tissue": (0.6, 0.8),  # muscle
    "lung": (0.3, 0.5),
    "liver": (5.0, 9.0),
    "spleen": (20.0, 30.0),
    "kidney": (12.0, 20.0),
    "bone_marrow": (0.8, 1.2),
    "bone_cortical": (0.3, 0.5),
    "bladder": (15.0, 80.0),  # urine; the images redraw it from the image stream (imaging.URINE_*)
    "renal_pelvis": (20.0, 60.0),  # urine; idem
    "adrenal": (8.0, 12.0),
    "pancreas": (2.0, 3.5),  # diffuse; the focal uncinate-process uptake is drawn by imaging.py
    "bowel": (1.3, 2.3),
    "fat": (0.3, 0.5),
    "heart_vessels": (1.3, 2.0),  # blood pool
    "csf": (0.2, 0.4),
}

# Follow-up horizon of the binary endpoint (months) is pfs_core.schema.SHORT_PFS_MONTHS.
