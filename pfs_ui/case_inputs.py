"""Case Explorer inputs: the sample or the uploads, kept across a browser reload (:mod:`pfs_ui.persist`).

The widgets' values (case source, sample, model bundle, weight, dose, the labs as entered) and the uploaded
files are kept in the server's memory for this browser; on a new session (a reload) they are put back before
the widgets are drawn. Restored files are used as if uploaded until another file is uploaded or they are
cleared; "Clear case" forgets everything. Uploaded files are never written to disk here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pfs_core import schema
from pfs_ui import lesion_view, persist

SOURCES = ("Sample case", "Upload PET/CT")
#: Session-state keys of the page's widgets whose values are kept (the labs: every key of the case's lab prefix).
KEPT_KEYS = ("bundle", "source", "sample_id", "weight", "dose")
#: This session's restored files: role → tuple of :class:`pfs_ui.persist.KeptFile`.
RESTORED_KEY = "case_restored_files"
#: Upload ids already copied into the store, by role (each file is copied once, not at every rerun).
STORED_IDS_KEY = "case_stored_ids"
#: Bumped by "Clear case": new uploader keys, so the uploaders come back empty.
GENERATION_KEY = "case_upload_generation"
ROLES = {"pet": "PET", "ct": "CT", "organs": "organ masks"}

#: What the PET and CT uploaders take; the browser is not given a type list, so that any other file reaches
#: :func:`upload_problem` and is named with its reason instead of a silent red icon in the uploader.
IMAGE_FORMATS = "a NIfTI file (.nii, .nii.gz) or a DICOM series as .zip"
#: First bytes of files often uploaded by mistake, to say what a rejected file is.
KNOWN_SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"),
                    (b"GIF8", "a GIF image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"))




@dataclass
class CaseInputs:
    """Where the images come from and the lab defaults to show."""

    key: str
    lab_defaults: dict[str, Any]
    pet_path: Path | None = None
    ct_path: Path | None = None
    pet_upload: Any = None
    ct_upload: Any = None
    weight_kg: float | None = None
    dose_mbq: float | None = None
    #: A sample case's simulated organ masks (``<id>_organ_masks.nii.gz``), used to measure its lesions.
    organs_path: Path | None = None
    #: Uploaded organ masks (one file, or a .zip of a TotalSegmentator folder, and a JSON of label names).
    organ_uploads: list[Any] = field(default_factory=list)
    #: The case in words, for the result header: the sample id or the uploaded file names.
    title: str = ""
    #: One line per given upload that cannot be read (role, file name, reason); Predict refuses while any.
    problems: list[str] = field(default_factory=list)

    def signature(self) -> tuple[Any, ...]:
        """What the images are: the sample case, or each upload's name, size and content id; weight, dose."""
        files = (self.pet_upload, self.ct_upload, *self.organ_uploads)
        return (self.key, str(self.pet_path), str(self.ct_path), str(self.organs_path),
                tuple(_file_signature(u) for u in files), self.weight_kg, self.dose_mbq)


def _file_signature(upload: Any) -> tuple[Any, ...] | None:
    """(name, size, content id) of an upload: Streamlit's file id (new for each upload), else a sha256."""
    if upload is None:
        return None
    content = getattr(upload, "file_id", None) or hashlib.sha256(upload.getvalue()).hexdigest()
    return upload.name, getattr(upload, "size", None), content


def upload_problem(role: str, upload: Any) -> str | None:
    """Why an uploaded PET or CT cannot be an image the loader reads (from its name and first bytes), or None.

    Only a first check, so that a wrong file is named at once; the loader's own checks run at Predict.
    """
    name = str(upload.name)
    with upload.getbuffer() as view:  # no copy of a large upload
        size, head = len(view), bytes(view[:352])
    lower = name.lower()
    reason: str | None
    if size == 0:
        reason = "it is empty (0 bytes); export or copy it again"
    elif lower.endswith(".nii.gz"):
        reason = None if head.startswith(b"\x1f\x8b") else "it is named .nii.gz but is not gzip-compressed"
    elif lower.endswith(".nii"):
        reason = None if _nifti_header(head) else "it is named .nii but does not start with a NIfTI header"
    elif lower.endswith(".zip"):
        reason = None if head.startswith(b"PK") else "it is named .zip but is not a zip archive"
    elif head[128:132] == b"DICM" or lower.endswith(".dcm"):
        reason = "it is a single DICOM file; zip the folder that holds the whole series and upload the .zip"
    else:
        kind = next((what for magic, what in KNOWN_SIGNATURES if head.startswith(magic)), None)
        reason = f"it is {kind}" if kind else f"its name ends in '{Path(lower).suffix or lower}'"
    if reason is None:
        return None
    return (f"{role}: {name} is not {IMAGE_FORMATS}: {reason}. Upload the {role} again in one of these formats, "
            f"or remove it to predict without a {role}.")


def _nifti_header(head: bytes) -> bool:
    """True when ``head`` starts like a NIfTI-1 (348) or NIfTI-2 (540) header, in either byte order."""
    return len(head) >= 4 and {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")} & {348, 540} != set()



def case_source_widgets(source: str, samples: pd.DataFrame) -> CaseInputs:
    """The sample picker or the upload widgets; returns the chosen inputs (restored files where none uploaded)."""
    if source == "Sample case":
        ids = samples["patient_id"].tolist()
        if "sample_id" in st.session_state and st.session_state["sample_id"] not in ids:
            del st.session_state["sample_id"]  # a kept sample no longer shipped
        pid = st.selectbox("Sample case (simulated patient)", ids, key="sample_id")
        row = samples.set_index("patient_id").loc[pid]
        defaults = {c: row.get(c) for c in schema.LAB_COLUMNS}
        return CaseInputs(key=str(pid), lab_defaults=defaults, pet_path=Path(row["pet"]), ct_path=Path(row["ct"]),
                          organs_path=Path(row["organs"]) if row.get("organs") else None,
                          title=f"sample case {pid} (simulated)")
    st.caption("NIfTI (.nii, .nii.gz) or a DICOM series as .zip. Files stay in this server's memory only: for "
               "this session, and for a reload of this page within an hour (Clear case forgets them).")
    left, right = st.columns(2)
    # No type list: the browser would refuse another file with only a red icon, and Predict would then answer
    # without it; every file reaches upload_problem instead, which names it and says why.
    pet_up = left.file_uploader("PET (SUVbw, or Bq/mL with weight and dose)", key=uploader_key("pet_up"))
    ct_up = right.file_uploader("CT (HU)", key=uploader_key("ct_up"))
    weight = left.number_input("Weight (kg), only for PET in Bq/mL", value=None, min_value=1.0, key="weight")
    dose = right.number_input("Injected activity (MBq), only for PET in Bq/mL", value=None, min_value=1.0,
                              key="dose")
    organ_up = st.container().file_uploader(
        "Organ masks (optional): a TotalSegmentator output folder as .zip, a multi-label NIfTI (with a JSON of "
        "label names), or a DICOM SEG / RTSTRUCT", accept_multiple_files=True,
        key=uploader_key(lesion_view.UPLOAD_KEY),
        help="The lesions the model reads are measured against these organs; without them the organ network "
             "(trained on simulated CTs only) delineates them. Kept in memory for this session only.")
    pets, pet_restored = _in_use("pet", [pet_up] if pet_up is not None else [])
    cts, ct_restored = _in_use("ct", [ct_up] if ct_up is not None else [])
    organs, organs_restored = _in_use("organs", list(organ_up or []))
    restored = [f"{ROLES[role]} {f.name}" for role, files, flag in (("pet", pets, pet_restored),
                ("ct", cts, ct_restored), ("organs", organs, organs_restored)) if flag for f in files]
    if restored:
        _restored_note(restored)
    pet, ct = (pets or [None])[0], (cts or [None])[0]
    inputs = CaseInputs(key="upload", lab_defaults={}, pet_upload=pet, ct_upload=ct, weight_kg=weight,
                        dose_mbq=dose, organ_uploads=organs, title=_upload_title(pet, ct))
    inputs.problems = [p for role, upload in (("PET", pet), ("CT", ct)) if upload is not None
                       for p in [upload_problem(role, upload)] if p]
    inputs.problems += [p for upload in inputs.organ_uploads for p in [lesion_view.organ_upload_problem(upload)] if p]
    if inputs.problems:
        st.error("\n\n".join(inputs.problems), icon=":material/error:")
    return inputs


def _upload_title(pet: Any, ct: Any) -> str:
    """The uploaded case in words: its file names ('no PET' / 'no CT' where one is not given)."""
    parts = [f"{role} {upload.name}" if upload is not None else f"no {role}" for role, upload in (("PET", pet),
                                                                                              ("CT", ct))]
    return "uploaded " + ", ".join(parts)


def lab_key_prefix(case_key: str) -> str:
    """The session-state key prefix of the lab fields of case ``case_key`` (:func:`pfs_ui.labs_form.labs_form`)."""
    return f"lab_{case_key}_"


def restore_case() -> bool:
    """Put this browser's kept inputs back into the session before any widget is drawn; True when done.

    Runs on the first run of a visit of the page (a reload, or a return from another page: the widgets'
    values are then gone from the session); nothing when the browser has no key or nothing is kept.
    """
    browser = persist.browser_key()
    if browser is None or "source" in st.session_state:
        return False
    entry = persist.STORE.get(browser)
    if entry is None:
        return False
    for key, value in entry.fields.items():
        if key == "source" and value not in SOURCES:
            continue
        st.session_state[key] = value
    st.session_state[RESTORED_KEY] = dict(entry.files)
    st.session_state[STORED_IDS_KEY] = {role: tuple(f.file_id for f in files) for role, files in entry.files.items()}
    return True


def keep_case(inputs: CaseInputs) -> None:
    """Keep the page's widget values and the labs of ``inputs``' case for this browser (after the lab form)."""
    browser = persist.browser_key()
    if browser is None:
        return
    prefix = lab_key_prefix(inputs.key)
    fields = {key: st.session_state[key] for key in KEPT_KEYS if key in st.session_state}
    fields.update({str(key): value for key, value in st.session_state.items() if str(key).startswith(prefix)})
    persist.STORE.put_fields(browser, fields)


def clear_case_button(where: Any) -> None:
    """"Clear case": forget this browser's kept inputs and empty the page's fields and uploaders."""
    if not where.button("Clear case", key="clear_case", icon=":material/delete:",
                        help="Forget this case's files and values, here and as kept for a reload"):
        return
    browser = persist.browser_key()
    if browser is not None:
        persist.STORE.forget(browser)
    for key in list(st.session_state.keys()):
        if key in (*KEPT_KEYS[1:], RESTORED_KEY, STORED_IDS_KEY) or (str(key).startswith("lab_")
                                                                     and not str(key).startswith("lab_import")):
            del st.session_state[key]
    st.session_state[GENERATION_KEY] = int(st.session_state.get(GENERATION_KEY, 0)) + 1
    st.rerun()


def uploader_key(base: str) -> str:
    """The key of uploader ``base`` now: a new one after each "Clear case", so that it comes back empty."""
    generation = int(st.session_state.get(GENERATION_KEY, 0))
    return base if generation == 0 else f"{base}_{generation}"


def _in_use(role: str, uploads: Sequence[Any]) -> tuple[list[Any], bool]:
    """(files to use for ``role``, whether restored): the uploads when any, else the restored files.

    A new upload replaces the restored files of its role and is copied into the store once; an uploader
    emptied by the user forgets the role.
    """
    restored: dict[str, tuple[persist.KeptFile, ...]] = st.session_state.setdefault(RESTORED_KEY, {})
    stored: dict[str, tuple[str, ...]] = st.session_state.setdefault(STORED_IDS_KEY, {})
    browser = persist.browser_key()
    if uploads:
        restored.pop(role, None)
        ids = tuple(str(getattr(u, "file_id", "") or u.name) for u in uploads)
        if browser is not None and stored.get(role) != ids:
            stored[role] = ids
            if not persist.STORE.put_files(browser, role, tuple(persist.kept_file(u) for u in uploads)):
                st.caption(f"The {ROLES[role]} file(s) are too large to keep across a reload of the page.")
        return list(uploads), False
    if restored.get(role):
        return [persist.RestoredFile(kept) for kept in restored[role]], True
    if browser is not None and role in stored:
        stored.pop(role)
        persist.STORE.put_files(browser, role, ())
    return [], False


def _restored_note(names: list[str]) -> None:
    """"Restored from this browser session: <names> [Clear]"; Clear drops the restored files."""
    left, right = st.columns([5, 1])
    left.info(f"Restored from this browser session: {', '.join(names)}. Used as if uploaded until you upload "
              "another file or clear them.", icon=":material/history:")
    if right.button("Clear", key="clear_restored", help="Forget the restored files"):
        browser = persist.browser_key()
        for role in st.session_state.pop(RESTORED_KEY, {}):
            st.session_state.get(STORED_IDS_KEY, {}).pop(role, None)
            if browser is not None:
                persist.STORE.put_files(browser, role, ())
        st.rerun()
