"""Give shipped bundles the registry's current label and description (weights and version unchanged).

    python benchmarks/refresh_bundle_text.py models/lab_pet_ct models/lab_pet_ct_pretrained   # or no argument: models/*/

A finding about a model (e.g. an ablation) changes what its label and description must say; the bundles
trained before it keep saying the old text until this renews their manifest, model card, hashes and digest
(:func:`pfs_core.models.bundle.record_description`). Organ network bundles are skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pfs_core.models.bundle import MANIFEST, record_description
from pfs_core.models.registry import MODELS_BY_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", type=Path)
    folders = parser.parse_args().bundles or sorted(p.parent for p in Path("models").glob(f"*/{MANIFEST}"))
    for folder in folders:
        manifest = json.loads((folder / MANIFEST).read_text())
        spec = MODELS_BY_NAME.get(manifest.get("model_name", ""))
        if spec is None:
            print(f"{folder}: not a risk model bundle, skipped")
        elif (manifest.get("label"), manifest.get("description")) == (spec.label, spec.description):
            print(f"{folder}: text already current")
        else:
            record_description(folder, label=spec.label, description=spec.description)
            print(f"{folder}: label and description renewed")


if __name__ == "__main__":
    main()
