"""Options of the generative model that change what is simulated (all written to summary.json)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pfs_core.errors import UsageError
from pfs_core.synth.constants import ANATOMY_MODES, CONTRAST_PHASES

#: Share of patients with SSTR-negative (mismatched) lesions in treated PRRT cohorts (about 5-15 %).
DEFAULT_SSTR_NEGATIVE_RATE = 0.07


@dataclass(frozen=True)
class SimOptions:
    """Cohort-level switches.

    ``sstr_negative_rate``: per-patient probability of SSTR-negative lesions at the median
    Ki-67 (rises with Ki-67). ``labs_independent``: labs and clinical values (Ki-67 and
    primary site included) come from an independent patient, so that they carry no
    information about the imaging burden (for truth checks). ``contrast``: CT phase,
    portal-venous contrast-enhanced (the usual PET/CT protocol) or unenhanced. ``anatomy``:
    ``"standard"`` or ``"varied"``, wider per-organ positions and sizes (kidneys, spleen) drawn from a
    stream of their own, for training the organ network; not a patient population.
    """

    sstr_negative_rate: float = DEFAULT_SSTR_NEGATIVE_RATE
    labs_independent: bool = False
    contrast: str = "portal_venous"
    anatomy: str = "standard"

    def __post_init__(self) -> None:
        rate = self.sstr_negative_rate
        if not (isinstance(rate, int | float) and math.isfinite(rate) and 0.0 <= rate < 1.0):
            raise UsageError(f"--sstr-negative-rate must be a number in [0, 1) (got {rate!r}); default "
                             f"{DEFAULT_SSTR_NEGATIVE_RATE}")
        if self.contrast not in CONTRAST_PHASES:
            raise UsageError(f"--contrast must be one of {', '.join(CONTRAST_PHASES)} (got {self.contrast!r})")
        if self.anatomy not in ANATOMY_MODES:
            raise UsageError(f"--anatomy must be one of {', '.join(ANATOMY_MODES)} (got {self.anatomy!r})")

    def as_dict(self) -> dict[str, Any]:
        # "anatomy" only when not standard, so that standard cohorts stay byte-identical to before it existed
        out = asdict(self)
        if self.anatomy == "standard":
            del out["anatomy"]
        return out

    def table_key(self) -> str:
        """The options that change the tables (the contrast phase changes only the CT images)."""
        key = f"neg={self.sstr_negative_rate!r}|indep={self.labs_independent}"
        return key if self.anatomy == "standard" else f"{key}|anatomy={self.anatomy}"
