"""Tumour lesions: disease profile, sites, sizes, SSTR uptake, heterogeneity, CT appearance, placement.

Lesions are solid ellipsoids in the patient frame (mm) with an uptake profile
(necrotic core, gradient; SUVbw before the PET blur) and a CT appearance that does
not depend on SSTR status. Liver involvement is drawn first as a target liver
tumour fraction with a long tail (the liver grows with it, see
:func:`liver_scale`), then filled with lesions. All draws come from the patient's
attribute stream. Ranges and their sources: docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pfs_core.synth.anatomy import T_COLON, Anatomy, tissue_at
from pfs_core.synth.constants import LABEL
from pfs_core.synth.geometry import Array, Ellipsoid, rotation

# Diameter (mm) of a sphere of the same volume for non-liver sites: lognormal median, log-sd, clip range.
DIAMETER_MM: dict[str, tuple[float, float, float, float]] = {
    "lymph_node": (16.0, 0.4, 8.0, 45.0),
    "bone": (15.0, 0.4, 8.0, 35.0),
    "primary_pancreas": (28.0, 0.35, 12.0, 60.0),
    "primary_small_bowel": (20.0, 0.35, 10.0, 40.0),
}
LIVER_INVOLVED_P = 0.85  # share of patients with liver metastases
LIVER_FRACTION_MEDIAN, LIVER_FRACTION_LOG_SD, LIVER_FRACTION_MAX = 0.075, 1.1, 0.75
LIVER_DIAMETER_MM = (7.0, 140.0)  # clip range of one liver lesion's equivalent diameter
MAX_LIVER_LESIONS = 30
MAX_LESIONS = 40
TLR_MEDIAN, TLR_PATIENT_LOG_SD, TLR_LESION_LOG_SD = 4.0, 0.6, 0.3
TLR_RANGE = (1.2, 40.0)  # viable tumour-to-liver SUV ratio of SSTR-positive lesions
MAX_LESION_SUV = 150.0
SSTR_NEGATIVE_SUV = (0.5, 1.5)  # SUVbw of SSTR-negative lesions (at or below background)
SSTR_NEGATIVE_COUNT_P = (0.65, 0.25, 0.10)  # 1, 2 or 3 negative lesions in an affected patient
N_CANDIDATES = 96  # placement candidates per non-liver site
N_LIVER_CANDIDATES = 600
DEPTH_LEVELS_MM = np.array([4.0, 8.0, 12.0, 16.0, 22.0, 28.0, 36.0, 45.0, 55.0])
LIVER_DEPTH_PER_RADIUS = 0.55  # a liver lesion's centre lies this many radii inside the liver surface
CT_OCCULT_BONE_P = 0.4  # marrow lesions without a CT correlate


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
    n_liver_lesions: int
    volume_ml: float
    positive_volume_ml: float
    negative_volume_ml: float
    liver_lesion_volume_ml: float
    bone_volume_ml: float
    ct_visible_volume_ml: float
    liver_tumour_fraction: float
    mean_suv: float  # volume-weighted true mean SUV of all lesions; NaN without lesions
    positive_tlr: float  # volume-weighted viable tumour-to-liver ratio of SSTR-positive lesions; NaN without any
    necrotic_fraction: float  # necrotic share of the SSTR-positive lesion volume (0 without any)


@dataclass(frozen=True)
class DiseaseProfile:
    """Patient-level disease draws made before the anatomy (the liver grows with its involvement)."""

    liver_fraction: float  # target liver tumour fraction (0..LIVER_FRACTION_MAX)
    n_liver: int
    size_factor: float
    log_tlr: float
    sstr_negative: bool


def liver_scale(liver_fraction: float) -> float:
    """Linear scale of the liver for a tumour fraction ``f``: parenchyma kept, volume ``1 / (1 - 0.8 f)``."""
    return float((1.0 - 0.8 * liver_fraction) ** (-1.0 / 3.0))


def draw_profile(rng: np.random.Generator, *, ki67: float, sstr_negative_rate: float) -> DiseaseProfile:
    """Liver involvement (long-tailed tumour fraction), patient size/uptake factors, SSTR-negative disease.

    SSTR-negative (mismatched) disease has odds ``rate / (1 - rate)`` at Ki-67 5 % and
    rises with Ki-67 (odds ratio e per unit of ln Ki-67).
    """
    involved = rng.uniform() < LIVER_INVOLVED_P
    f = LIVER_FRACTION_MEDIAN * math.exp(LIVER_FRACTION_LOG_SD * rng.normal())
    f = min(f, LIVER_FRACTION_MAX) if involved else 0.0
    lam = rng.gamma(1.5, 5.0 / 1.5)
    n_liver = int(min(MAX_LIVER_LESIONS, 1 + rng.poisson(lam * (1.0 + 4.0 * f)))) if involved else 0
    size_factor = float(np.exp(rng.normal(0.0, 0.25)))
    log_tlr = float(rng.normal(math.log(TLR_MEDIAN), TLR_PATIENT_LOG_SD))
    u = rng.uniform()
    if sstr_negative_rate <= 0.0:
        negative = False
    else:
        logit = math.log(sstr_negative_rate / (1.0 - sstr_negative_rate)) + (math.log(ki67) - math.log(5.0))
        negative = u < 1.0 / (1.0 + math.exp(-logit))
    return DiseaseProfile(f, n_liver, size_factor, log_tlr, negative)


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


def _liver_candidates(rng: np.random.Generator, anat: Anatomy) -> tuple[Array, Array]:
    """Template-space points inside the liver ``(N, 3)`` and their depth below its surface (mm)."""
    lo, hi = (np.asarray(v, dtype=float) for v in anat.liver.bbox())
    pts = lo + rng.uniform(size=(4 * N_LIVER_CANDIDATES, 3)) * (hi - lo)
    pts = pts[anat.liver.inside(pts[:, 0], pts[:, 1], pts[:, 2])][:N_LIVER_CANDIDATES]
    depth = np.zeros(len(pts))
    previous = 0.0
    for level in DEPTH_LEVELS_MM:  # a point reaches a level only if it passed every shallower one
        depth = np.where(anat.liver.interior(pts, float(level)) & (depth == previous), level, depth)
        previous = float(level)
    return pts, depth


def _candidates(rng: np.random.Generator, anat: Anatomy, site: str) -> Array:
    """Template-space candidate centres ``(N_CANDIDATES, 3)`` for a non-liver site (mm)."""
    n = N_CANDIDATES
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
    "lymph_node": {LABEL["fat"]},
    "bone": {LABEL["bone"]},
    "primary_pancreas": {LABEL["pancreas"]},
    "primary_small_bowel": {LABEL["bowel"], LABEL["fat"], T_COLON},
}


def _liver_diameters(rng: np.random.Generator, profile: DiseaseProfile, liver_ml: float) -> Array:
    """Equivalent diameters (mm, largest first) whose volumes add up to the target fraction."""
    if profile.n_liver == 0:
        return np.zeros(0)
    weights = np.exp(rng.normal(0.0, 1.2, size=profile.n_liver))
    volume_mm3 = profile.liver_fraction * liver_ml * 1000.0 * weights / weights.sum()
    diam = np.clip((6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0), *LIVER_DIAMETER_MM)
    return np.sort(diam)[::-1]


@dataclass
class _Placer:
    """Places ellipsoids without overlap (1 mm gap) inside the imaged z range (patient frame, mm)."""

    z_lo: float
    z_hi: float
    placed: list[tuple[Array, float]]

    def free(self, p: Array, r_max: float) -> bool:
        if not (self.z_lo + r_max + 6.0 <= p[2] <= self.z_hi - r_max - 6.0):
            return False
        return not any(np.linalg.norm(p - c) < r_max + r + 1.0 for c, r in self.placed)


def _place_liver(rng: np.random.Generator, anat: Anatomy, diam: Array, placer: _Placer) -> list[Ellipsoid]:
    """Largest lesion first at a candidate deep enough for its radius; shrink by 15 % up to 4 times."""
    if len(diam) == 0:
        return []
    cand_u, depth = _liver_candidates(rng, anat)
    cand_p = anat.deformation.from_template(cand_u) if len(cand_u) else cand_u
    used = np.zeros(len(cand_u), dtype=bool)
    shapes = []
    for d in diam:
        base = _ellipsoid(rng, np.zeros(3), float(d))
        for shrink in (1.0, 0.85, 0.72, 0.61, 0.52):
            radii = np.asarray(base.radii) * shrink
            r_max = float(radii.max())
            fits = np.flatnonzero(~used & (depth >= LIVER_DEPTH_PER_RADIUS * r_max))
            hit = next((int(i) for i in fits if placer.free(cand_p[i], r_max)), None)
            if hit is not None:
                used[hit] = True
                placer.placed.append((cand_p[hit], r_max))
                shapes.append(Ellipsoid(tuple(float(v) for v in cand_p[hit]), tuple(float(v) for v in radii),  # type: ignore[arg-type]
                                        base.rot))
                break
    return shapes


def _place_site(rng: np.random.Generator, anat: Anatomy, site: str, count: int, size_factor: float,
                placer: _Placer) -> list[Ellipsoid]:
    median, sd, lo, hi = DIAMETER_MM[site]
    diam = np.clip(median * size_factor * np.exp(rng.normal(0.0, sd, size=count)), lo, hi)
    cand_u = _candidates(rng, anat, site)
    cand_ok = np.isin(tissue_at(anat, cand_u), list(_ALLOWED_TISSUE[site]))
    cand_p = anat.deformation.from_template(cand_u)
    used = np.zeros(len(cand_u), dtype=bool)
    shapes = []
    for d in diam:
        shape = _ellipsoid(rng, np.zeros(3), float(d))
        r_max = max(shape.radii)
        hit = next((int(i) for i in np.flatnonzero(cand_ok & ~used) if placer.free(cand_p[i], r_max)), None)
        if hit is not None:
            used[hit] = True
            placer.placed.append((cand_p[hit], r_max))
            shapes.append(Ellipsoid(tuple(float(v) for v in cand_p[hit]), shape.radii, shape.rot))  # type: ignore[arg-type]
    return shapes


def _ct_appearance(rng: np.random.Generator, site: str) -> tuple[float, float, bool, bool]:
    """(unenhanced HU, portal-venous HU, relative-to-liver, CT-visible); independent of SSTR status.

    Liver metastases in the portal-venous phase: three quarters hypoattenuating to the
    enhanced parenchyma, a fifth isoattenuating, a few hyperattenuating (Ronot, Eur J
    Radiol 2017: 88 % of enteric and 56 % of pancreatic metastases hypoattenuating);
    unenhanced about two thirds hypoattenuating. Bone lesions are CT-occult (marrow only)
    with probability :data:`CT_OCCULT_BONE_P`.
    """
    u = rng.uniform(size=4)
    if site == "liver":
        if u[0] < 0.75:
            pv = -(8.0 + 32.0 * u[1])
        elif u[0] < 0.95:
            pv = -8.0 + 16.0 * u[1]
        else:
            pv = 5.0 + 15.0 * u[1]
        unenhanced = -(5.0 + 20.0 * u[2]) if u[3] < 0.65 else -5.0 + 8.0 * u[2]
        return unenhanced, pv, True, True
    if site == "lymph_node":
        return 35.0 + 15.0 * u[1], 70.0 + 30.0 * u[2], False, True
    if site == "bone":
        visible = u[3] >= CT_OCCULT_BONE_P
        hu = 450.0 + 450.0 * u[1] if u[0] < 0.5 else 40.0 + 50.0 * u[1]
        return hu, hu + (0.0 if hu > 400 else 20.0 * u[2]), False, visible
    if site == "primary_pancreas":
        return 35.0 + 10.0 * u[1], 90.0 + 30.0 * u[2], False, True
    return 40.0 + 15.0 * u[1], 80.0 + 30.0 * u[2], False, True


def _negative_mask(rng: np.random.Generator, profile: DiseaseProfile, volumes: Array) -> Array:
    """Which lesions are SSTR-negative: 1-3 of them, smaller ones more likely; never all."""
    n = len(volumes)
    u = rng.uniform()
    weights = 1.0 / np.sqrt(np.maximum(volumes, 1e-3))
    order = rng.choice(n, size=n, replace=False, p=weights / weights.sum()) if n else np.zeros(0, dtype=int)
    negative = np.zeros(n, dtype=bool)
    if profile.sstr_negative and n >= 2:
        k = 1 + int(np.searchsorted(np.cumsum(SSTR_NEGATIVE_COUNT_P), u, side="right"))
        negative[order[: min(k, n - 1)]] = True
    return negative


def _uptake(rng: np.random.Generator, profile: DiseaseProfile, diameter: float, negative: bool, liver_suv: float,
            ki67: float) -> dict[str, float]:
    """SUV (viable rim), TLR, necrotic core and gradient of one lesion."""
    u = rng.uniform(size=5)
    z = rng.normal()
    if negative:
        suv = SSTR_NEGATIVE_SUV[0] + (SSTR_NEGATIVE_SUV[1] - SSTR_NEGATIVE_SUV[0]) * u[0]
        return {"suv": suv, "tlr": suv / liver_suv, "necrotic_radius": 0.0, "core_suv": 0.0, "gradient": 0.0}
    tlr = float(np.clip(math.exp(profile.log_tlr + TLR_LESION_LOG_SD * z), *TLR_RANGE))
    suv = min(tlr * liver_suv, MAX_LESION_SUV)
    p_core = (0.015 + 0.75 / (1.0 + math.exp(-(diameter - 60.0) / 10.0))) * (1.3 if ki67 > 10.0 else 1.0)
    core = 0.35 + 0.35 * u[2] if u[1] < min(p_core, 0.9) else 0.0
    return {"suv": suv, "tlr": suv / liver_suv, "necrotic_radius": core, "core_suv": 0.5 + 1.5 * u[3],
            "gradient": 0.4 * u[4]}


def draw_lesions(rng: np.random.Generator, anat: Anatomy, profile: DiseaseProfile, *, primary_site: str,
                 ki67: float) -> list[Lesion]:
    """Draw and place the patient's lesions (1 to MAX_LESIONS) inside the imaged region, without overlap."""
    counts = {
        "primary_pancreas": int(primary_site == "pancreas" and rng.uniform() < 0.6),
        "primary_small_bowel": int(primary_site == "small_bowel" and rng.uniform() < 0.55),
        "lymph_node": _count(rng, 0.55, 1.2, 6),
        "bone": _count(rng, 0.35, 2.0, 10),
    }
    # Imaged z range shared by CT and PET (patient frame, mm).
    placer = _Placer(max(anat.ct_grid.origin[2], anat.pet_grid.origin[2]),
                     min(anat.ct_grid.upper()[2], anat.pet_grid.upper()[2]), [])
    drafts = [("liver", s) for s in _place_liver(rng, anat, _liver_diameters(rng, profile, anat.liver_volume_ml), placer)]
    for site in ("primary_pancreas", "primary_small_bowel", "lymph_node", "bone"):
        if counts[site]:
            drafts += [(site, s) for s in _place_site(rng, anat, site, counts[site], profile.size_factor, placer)]
    if not drafts:  # every treated patient has SSTR-positive disease: one node at least
        drafts = [("lymph_node", s) for s in _place_site(rng, anat, "lymph_node", 1, profile.size_factor, placer)]
    drafts = drafts[:MAX_LESIONS]
    negative = _negative_mask(rng, profile, np.array([s.volume_ml for _, s in drafts]))
    liver_suv = anat.suv_of("liver")
    lesions = []
    for i, (site, shape) in enumerate(drafts):
        diameter = 2.0 * (shape.volume_ml * 1000.0 * 3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        uptake = _uptake(rng, profile, diameter, bool(negative[i]), liver_suv, ki67)
        hu, hu_pv, rel, visible = _ct_appearance(rng, site)
        lesions.append(Lesion(i + 1, site, shape, uptake["suv"], uptake["tlr"], bool(negative[i]), float(hu), rel,
                              ct_hu_pv=float(hu_pv), necrotic_radius=uptake["necrotic_radius"],
                              core_suv=uptake["core_suv"], core_hu=float(10.0 + 20.0 * rng.uniform()),
                              gradient=uptake["gradient"], ct_visible=visible))
    return lesions


def tumour_burden(lesions: list[Lesion], liver_volume_ml: float) -> TumourBurden:
    """Summaries of the analytic lesion volumes (ml) and true uptakes."""
    if not lesions:
        return TumourBurden(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, math.nan, math.nan, 0.0)
    vol = np.array([les.volume_ml for les in lesions])
    neg = np.array([les.sstr_negative for les in lesions], dtype=bool)
    liver = np.array([les.site == "liver" for les in lesions], dtype=bool)
    bone = np.array([les.site == "bone" for les in lesions], dtype=bool)
    visible = np.array([les.ct_visible for les in lesions], dtype=bool)
    mean_suv = np.array([les.suv_mean for les in lesions])
    tlr = np.array([les.tlr for les in lesions])
    core = np.array([les.necrotic_fraction for les in lesions])
    total = float(vol.sum())
    pos_vol = float(vol[~neg].sum())
    return TumourBurden(
        n_lesions=len(lesions),
        n_sstr_negative=int(neg.sum()),
        n_liver_lesions=int(liver.sum()),
        volume_ml=total,
        positive_volume_ml=pos_vol,
        negative_volume_ml=float(vol[neg].sum()),
        liver_lesion_volume_ml=float(vol[liver].sum()),
        bone_volume_ml=float(vol[bone].sum()),
        ct_visible_volume_ml=float(vol[visible].sum()),
        liver_tumour_fraction=float(vol[liver].sum() / liver_volume_ml),
        mean_suv=float((vol * mean_suv).sum() / total) if total > 0 else math.nan,
        positive_tlr=float((vol[~neg] * tlr[~neg]).sum() / pos_vol) if pos_vol > 0 else math.nan,
        necrotic_fraction=float((vol[~neg] * core[~neg]).sum() / pos_vol) if pos_vol > 0 else 0.0,
    )
