"""Fixed codes and tissue values of the cohort simulator (version-bumped on any change).

Organ label codes (``<id>_organs.nii.gz``, uint8, CT grid) are :data:`ORGAN_LABELS`.
CT attenuation is in Hounsfield units (HU), PET uptake in body-weight SUV (SUVbw).
"""

from __future__ import annotations

SIMULATOR_VERSION = "1.0.0"

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

# Typical CT attenuation per organ label (HU); per-patient jitter is added (see imaging.py).
TISSUE_HU: dict[str, float] = {
    "air": -1000.0,
    "soft_tissue": 45.0,
    "lung": -850.0,
    "liver": 60.0,
    "spleen": 45.0,
    "kidney": 35.0,
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

# Physiological SSTR-PET uptake ranges per tissue (SUVbw, uniform draw per patient).
TISSUE_SUV: dict[str, tuple[float, float]] = {
    "soft_tissue": (0.6, 0.8),  # muscle
    "lung": (0.3, 0.5),
    "liver": (5.0, 9.0),
    "spleen": (20.0, 30.0),
    "kidney": (12.0, 20.0),
    "bone_marrow": (0.8, 1.2),
    "bone_cortical": (0.3, 0.5),
    "bladder": (15.0, 80.0),  # urine, highly variable
    "renal_pelvis": (20.0, 60.0),  # urine
    "adrenal": (8.0, 12.0),
    "pancreas": (2.0, 3.5),  # physiological uncinate/pancreatic uptake
    "bowel": (1.3, 2.3),
    "fat": (0.3, 0.5),
    "heart_vessels": (1.3, 2.0),  # blood pool
    "csf": (0.2, 0.4),
}

# Follow-up horizon of the binary endpoint (months) is pfs_core.schema.SHORT_PFS_MONTHS.
