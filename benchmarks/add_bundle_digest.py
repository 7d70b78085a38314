"""Give bundles written before the bundle digest existed their ``bundle_digest``, then load each to check it.

    python benchmarks/add_bundle_digest.py models/lab_rf models/classic ...   # or no argument: every models/*/

Every listed file's sha256 is checked first (a changed file is still refused); the manifest's own fields are
taken as they are, so run it only on copies you trust (the ones shipped in ``models/``). A bundle that already
has a digest that matches is left unchanged. See docs/outputs.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pfs_core.errors import BundleError
from pfs_core.models.bundle import DIGEST_FIELD, MANIFEST, add_digest, load_bundle, verify_bundle
from pfs_core.models.organ_seg import FORMAT as ORGAN_FORMAT
from pfs_core.models.organ_seg import load_organ_bundle


def digest_one(folder: Path) -> str:
    """Add (or keep) the digest of ``folder``, then load or verify it as its format says; returns a status line."""
    manifest = json.loads((folder / MANIFEST).read_text())
    had = DIGEST_FIELD in manifest
    if had:
        verify_any(folder, manifest)  # already digested: it must still match
        return f"{folder}: already has {DIGEST_FIELD} {manifest[DIGEST_FIELD][:16]}… (checked)"
    digest = add_digest(folder)
    verify_any(folder, manifest)
    return f"{folder}: {DIGEST_FIELD} {digest[:16]}… added; loads"


def verify_any(folder: Path, manifest: dict[str, object]) -> None:
    if manifest.get("format") == ORGAN_FORMAT:
        load_organ_bundle(folder, device="cpu")
    else:
        verify_bundle(folder)
        load_bundle(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="bundle folders (default: every models/*/)")
    args = parser.parse_args(argv)
    folders = args.folders or sorted(p for p in Path("models").iterdir() if (p / MANIFEST).is_file())
    failed = 0
    for folder in folders:
        try:
            print(digest_one(folder))
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
