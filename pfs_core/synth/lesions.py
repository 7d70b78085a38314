"""Tumour lesions: sites, sizes, SSTR uptake, CT appearance and placement.

Lesions are solid ellipsoids in the patient frame (mm). Each has a true uptake
``suv`` (SUVbw, uniform inside the lesion, before the PET blur) and a CT
attenuation. SSTR-negative lesions have uptake at or below background but stay
visible on the CT. All draws come from the patient's attribute stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pfs_core.synth.anatomy import T_COLON, Anatomy, tissue_at
from pfs_core.synth.constants import LABEL
from pfs_core.synth.geometry import Array, Ellipsoid, rotation

# Diameter (mm) of a sphere of the same volume: lognormal median, log-sd, clip range.
DIAMETER_MM: dict[str, tuple[float, float, float, float]] = {
    "liver": (24.0, 0.55, 8.0, 60.0),
    "lymph_node": (16.0, 0.4, 8.0, 40.0),
    "bone": (15.0, 0.4, 8.0, 32.0),
    "primary_pancreas": (28.0, 0.35, 12.0, 55.0),
    "primary_small_bowel": (20.0, 0.35, 10.0, 40.0),
}
MAX_LESIONS = 20
TLR_RANGE = (1.0, 8.0)  # tumour-to-liver SUV ratio of SSTR-positive lesions
SSTR_NEGATIVE_SUV = (0.5, 1.5)  # SUVbw of SSTR-negative lesions (at or below background)
N_CANDIDATES = 96  # placement candidates per site


@dataclass(frozen=True)
class Lesion:
    """One lesion (patient frame, mm).

    Uptake profile (SUVbw, before the PET blur) with normalised radius ``rho`` (0 at the
    centre, 1 on the ellipsoid surface): ``core_suv`` for ``rho < necrotic_radius``
    (necrotic core; 0 = none), else ``suv * (1 - gradient * (1 - rho))`` (viable tissue,
    ``suv`` at the rim; ``gradient`` in [0, 1) lowers the uptake towards the centre).
    ``tlr`` is ``suv`` over the patient's liver SUV (the viable peak ratio).

    CT: ``ct_hu`` (unenhanced) and ``ct_hu_pv`` (portal-venous phase) of the viable
    part are absolute HU, except for liver lesions (``ct_relative``) where they are the
    difference to the liver parenchyma in the same phase. ``core_hu`` is the absolute
    HU of the necrotic core (no enhancement). ``ct_visible`` False = CT-occult (marrow
    lesion): the CT keeps the surrounding tissue.
    """

    label: int
    site: str
    shape: Ellipsoid
    suv: float
    tlr: float
    sstr_negative: bool
    ct_hu: float
    ct_relative: bool
    ct_hu_pv: float = 0.0
    necrotic_radius: float = 0.0
    core_suv: float = 0.0
    core_hu: float = 20.0
    gradient: float = 0.0
    ct_visible: bool = True

    @property
    def volume_ml(self) -> float:
        return self.shape.volume_ml

    @property
    def centre(self) -> tuple[float, float, float]:
        return self.shape.centre

    @property
    def necrotic_fraction(self) -> float:
        """Volume fraction of the necrotic core (``necrotic_radius**3``)."""
        return self.necrotic_radius**3

    @property
    def suv_mean(self) -> float:
        """Mean true uptake over the lesion volume (SUVbw), exact for the profile above."""
        c, g = self.necrotic_radius, self.gradient
        viable = self.suv * ((1.0 - g) * (1.0 - c**3) + 0.75 * g * (1.0 - c**4))
        return viable + self.core_suv * c**3

    def uptake(self, rho: Array) -> Array:
        """True uptake (SUVbw) at normalised radius ``rho`` (array, 0..1)."""
        viable = self.suv * (1.0 - self.gradient * (1.0 - rho))
        return np.where(rho < self.necrotic_radius, self.core_suv, viable)


@dataclass(frozen=True)
class TumourBurden:
    """Per-patient tumour summary (volumes in ml, SUV in SUVbw)."""

    n_lesions: int
    n_sstr_negative: int
    volume_ml: float
    positive_volume_ml: float
    negative_volume_ml: float
    liver_lesion_volume_ml: float
    bone_volume_ml: float
    liver_tumour_fraction: float
    mean_suv: float  # volume-weighted true SUV of all lesions; NaN without lesions
    positive_tlr: float  # volume-weighted tumour-to-liver ratio of SSTR-positive lesions; NaN without any


def _count(rng: np.random.Generator, p: float, mean_extra: float, cap: int, *, dispersion: float = 1.5) -> int:
    if rng.uniform() >= p:
        return 0
    lam = rng.gamma(dispersion, mean_extra / dispersion)
    return int(min(cap, 1 + rng.poisson(lam)))


def _ellipsoid(rng: np.random.Generator, centre: Array, diameter: float) -> Ellipsoid:
    r = 0.5 * diameter
    f1, f2 = rng.uniform(0.85, 1.15, size=2)
    rot = rotation(*rng.uniform(0.0, 2 * math.pi, size=3))
    return Ellipsoid.make(centre, np.array([r * f1, r * f2, r / (f1 * f2)]), rot)


def _candidates(rng: np.random.Generator, anat: Anatomy, site: str) -> Array:
    """Template-space candidate centres ``(N_CANDIDATES, 3)`` for a site (mm)."""
    n = N_CANDIDATES
    if site == "liver":
        e = anat.liver.ellipsoid
        v = rng.normal(size=(n, 3))
        v *= (rng.uniform(size=(n, 1)) ** (1 / 3)) / np.linalg.norm(v, axis=1, keepdims=True)
        return np.asarray(e.centre) + (v * np.asarray(e.radii)) @ np.asarray(e.rot).T
    if site == "lymph_node":
        ao, kid, pan = anat.aorta, anat.kidneys[0], anat.pancreas
        a0 = anat.body.a0
        station = rng.integers(0, 5, size=n)
        side = rng.choice([-1.0, 1.0], size=n)
        u = rng.uniform(size=(3, n))

        def lerp(lo: float, hi: float, k: int) -> Array:
            return lo + (hi - lo) * u[k]

        options = np.stack([
            # para-aortic / retroperitoneal
            np.stack([ao.cx + side * lerp(18, 35, 0), ao.cy + lerp(-5, 15, 1),
                      lerp(kid.centre[2] - 50, pan.centre[2] + 10, 2)], axis=1),
            # mesenteric
            np.stack([lerp(-0.2, 0.2, 0) * a0, pan.centre[1] + lerp(25, 50, 1), pan.centre[2] - lerp(20, 70, 2)], axis=1),
            # portocaval / hepatic hilum
            np.stack([lerp(0.1, 0.25, 0) * a0, pan.centre[1] + lerp(-10, 15, 1), pan.centre[2] + lerp(10, 35, 2)], axis=1),
            # iliac / pelvic
            np.stack([side * lerp(0.3, 0.45, 0) * a0, lerp(-20, 10, 1),
                      -0.5 * anat.body.length + lerp(50, 100, 2)], axis=1),
            # retrocrural
            np.stack([ao.cx + lerp(-20, 25, 0), ao.cy + lerp(-5, 20, 1), anat.z_diaphragm - lerp(20, 60, 2)], axis=1),
        ])
        return options[station, np.arange(n)]
    if site == "bone":
        sp = anat.spine.body
        z_lo, z_hi = anat.ct_grid.origin[2], anat.ct_grid.upper()[2]
        pts = np.column_stack([
            rng.normal(sp.cx, 3.0, n), rng.normal(sp.cy, 3.0, n), rng.uniform(z_lo, z_hi, n)
        ])
        pelvis = rng.uniform(size=n) < 0.3
        il = anat.iliac[0 if rng.uniform() < 0.5 else 1]
        v = rng.uniform(-0.6, 0.6, size=(n, 3))
        pts[pelvis] = (np.asarray(il.centre) + (v * np.asarray(il.radii)) @ np.asarray(il.rot).T)[pelvis]
        return pts
    if site == "primary_pancreas":
        e = anat.pancreas
        local = np.column_stack([
            rng.uniform(-0.75, 0.75, n) * e.radii[0], rng.normal(0, 2, n), rng.normal(0, 2, n)
        ])
        return np.asarray(e.centre) + local @ np.asarray(e.rot).T
    # primary_small_bowel: mesenteric part of the bowel region
    e = anat.bowel
    v = rng.uniform(-0.5, 0.5, size=(n, 3))
    return np.asarray(e.centre) + v * np.asarray(e.radii)


_ALLOWED_TISSUE = {
    "liver": {LABEL["liver"]},
    "lymph_node": {LABEL["fat"]},
    "bone": {LABEL["bone"]},
    "primary_pancreas": {LABEL["pancreas"]},
    "primary_small_bowel": {LABEL["bowel"], LABEL["fat"], T_COLON},
}


def _ct_appearance(rng: np.random.Generator, site: str, negative: bool) -> tuple[float, bool]:
    """(HU, relative-to-liver) of a lesion."""
    if site == "liver":
        return (-rng.uniform(20, 35) if negative else -rng.uniform(5, 15)), True
    if site == "lymph_node":
        return rng.uniform(35, 50), False
    if site == "bone":
        sclerotic = rng.uniform() < (0.4 if negative else 0.6)
        return (rng.uniform(450, 800) if sclerotic else rng.uniform(40, 90)), False
    if site == "primary_pancreas":
        return (rng.uniform(25, 40) if negative else rng.uniform(55, 80)), False
    return rng.uniform(40, 60), False


def draw_lesions(rng: np.random.Generator, anat: Anatomy, *, primary_site: str, ki67: float) -> list[Lesion]:
    """Draw the patient's lesions (0 to MAX_LESIONS), placed without overlap inside the imaged region.

    SSTR-negative (dedifferentiated) disease is more likely with a high Ki-67 (%).
    """
    counts = {
        "primary_pancreas": int(primary_site == "pancreas" and rng.uniform() < 0.6),
        "primary_small_bowel": int(primary_site == "small_bowel" and rng.uniform() < 0.55),
        "liver": _count(rng, 0.8, 5.0, 15),
        "lymph_node": _count(rng, 0.55, 1.2, 6),
        "bone": _count(rng, 0.35, 2.0, 10),
    }
    while sum(counts.values()) > MAX_LESIONS:
        counts["liver"] -= 1
    size_factor = float(np.exp(rng.normal(0.0, 0.25)))
    log_tlr = rng.normal(math.log(3.0), 0.45)
    dediff = rng.uniform() < 1.0 / (1.0 + math.exp(1.3 - 1.0 * (math.log(ki67) - math.log(5.0))))
    liver_suv = anat.suv_of("liver")

    # Imaged z range shared by CT and PET (patient frame, mm).
    z_lo = max(anat.ct_grid.origin[2], anat.pet_grid.origin[2])
    z_hi = min(anat.ct_grid.upper()[2], anat.pet_grid.upper()[2])
    placed: list[tuple[Array, float]] = []
    drafts: list[tuple[str, Ellipsoid]] = []
    for site in ("primary_pancreas", "primary_small_bowel", "liver", "lymph_node", "bone"):
        if counts[site] == 0:
            continue
        median, sd, lo, hi = DIAMETER_MM[site]
        diam = np.clip(median * size_factor * np.exp(rng.normal(0.0, sd, size=counts[site])), lo, hi)
        cand_u = _candidates(rng, anat, site)
        cand_ok = np.isin(tissue_at(anat, cand_u), list(_ALLOWED_TISSUE[site]))
        cand_p = anat.deformation.from_template(cand_u)
        if site == "liver":
            e = anat.liver.ellipsoid
            depth_q = e.q(cand_u[:, 0], cand_u[:, 1], cand_u[:, 2])
            depth_plane = anat.liver.plane_distance(cand_u[:, 0], cand_u[:, 1], cand_u[:, 2])
            r_min = min(e.radii)
        used = np.zeros(len(cand_u), dtype=bool)
        for d in diam:
            shape = _ellipsoid(rng, np.zeros(3), float(d))
            r_max = max(shape.radii)
            for i in map(int, np.flatnonzero(cand_ok & ~used)):
                p = cand_p[i]
                if not (z_lo + r_max + 6.0 <= p[2] <= z_hi - r_max - 6.0):
                    continue
                if site == "liver" and (
                    depth_q[i] > (1.0 - 0.6 * r_max / r_min) ** 2 or depth_plane[i] > -0.6 * r_max
                ):
                    continue
                if any(np.linalg.norm(p - c) < r_max + r + 2.0 for c, r in placed):
                    continue
                used[i] = True
                placed.append((p, r_max))
                drafts.append((site, Ellipsoid(tuple(float(v) for v in p), shape.radii, shape.rot)))  # type: ignore[arg-type]
                break

    n = len(drafts)
    negative = np.zeros(n, dtype=bool)
    if dediff and n:
        negative = rng.uniform(size=n) < 0.5
        if not negative.any():
            negative[int(rng.integers(n))] = True
        if negative.all() and n >= 2:
            negative[int(rng.integers(n))] = False
    lesions = []
    for i, (site, shape) in enumerate(drafts):
        if negative[i]:
            suv = float(rng.uniform(*SSTR_NEGATIVE_SUV))
            tlr = suv / liver_suv
        else:
            tlr = float(np.clip(math.exp(log_tlr + rng.normal(0.0, 0.25)), *TLR_RANGE))
            suv = tlr * liver_suv
        hu, rel = _ct_appearance(rng, site, bool(negative[i]))
        lesions.append(Lesion(i + 1, site, shape, suv, tlr, bool(negative[i]), float(hu), rel))
    return lesions


def tumour_burden(lesions: list[Lesion], liver_volume_ml: float) -> TumourBurden:
    """Summaries of the analytic lesion volumes (ml) and true uptakes."""
    vol = np.array([les.volume_ml for les in lesions])
    neg = np.array([les.sstr_negative for les in lesions], dtype=bool)
    liver = np.array([les.site == "liver" for les in lesions], dtype=bool)
    bone = np.array([les.site == "bone" for les in lesions], dtype=bool)
    suv = np.array([les.suv for les in lesions])
    tlr = np.array([les.tlr for les in lesions])
    total = float(vol.sum()) if len(vol) else 0.0
    pos_vol = float(vol[~neg].sum()) if len(vol) else 0.0
    return TumourBurden(
        n_lesions=len(lesions),
        n_sstr_negative=int(neg.sum()),
        volume_ml=total,
        positive_volume_ml=pos_vol,
        negative_volume_ml=float(vol[neg].sum()) if len(vol) else 0.0,
        liver_lesion_volume_ml=float(vol[liver].sum()) if len(vol) else 0.0,
        bone_volume_ml=float(vol[bone].sum()) if len(vol) else 0.0,
        liver_tumour_fraction=float(vol[liver].sum() / liver_volume_ml) if len(vol) else 0.0,
        mean_suv=float((vol * suv).sum() / total) if total > 0 else math.nan,
        positive_tlr=float((vol[~neg] * tlr[~neg]).sum() / pos_vol) if pos_vol > 0 else math.nan,
    )
