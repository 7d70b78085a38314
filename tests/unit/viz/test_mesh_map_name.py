"""pfs_core.viz.mesh.case_scene: the 3D legend names the map that is shown, not always Grad-CAM."""

from __future__ import annotations

import numpy as np

from pfs_core.viz import mesh as geometry
from pfs_core.viz.scene import mesh3d_figure


def test_the_map_isosurface_is_named_after_the_map_passed_in() -> None:
    cam = np.zeros((16, 16, 16), np.float32)
    cam[5:11, 5:11, 5:11] = 1.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    meshes = geometry.case_scene(None, None, None, None, cam, affine, suv_level=5.0, cam_level=0.5,
                                 map_name="Read-out map PET")
    assert [m.name for m in meshes] == ["Read-out map PET ≥ 0.5"] and not meshes[0].is_empty
    names = [t.name for t in mesh3d_figure(meshes).data]
    assert names == ["Read-out map PET ≥ 0.5"] and not any("Grad-CAM" in n for n in names)
    default = geometry.case_scene(None, None, None, None, cam, affine, suv_level=5.0)
    assert default[0].name == "Grad-CAM ≥ 0.5"  # the default, for callers that show Grad-CAM
