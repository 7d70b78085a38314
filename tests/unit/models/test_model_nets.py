import pytest
import torch

from pfs_core.models.nets import FusionHead, FusionNet, ImageBranch, LabBranch, build_net, count_parameters

SHAPE = (16, 16, 16)


def test_image_branch_shape_and_named_features():
    branch = ImageBranch(3, 1, (4, 8), (2, 2), embed_dim=8)
    assert branch(torch.rand(2, 1, *SHAPE)).shape == (2, 8)
    assert branch.last_layer == "features.layer1"
    assert dict(branch.named_modules())["features.layer1"] is branch.features.layer1


def test_default_branch_on_model_grid_is_small():
    branch = ImageBranch(3, 1)
    assert branch(torch.rand(2, 1, 64, 48, 64)).shape == (2, 16)
    assert count_parameters(branch) < 200_000


def test_lab_branch_and_head_shapes():
    assert LabBranch(5, 8, embed_dim=4)(torch.rand(3, 5)).shape == (3, 4)
    assert FusionHead(12, 8)(torch.rand(3, 12)).shape == (3, 1)


@pytest.mark.parametrize(("lab", "pet", "ct"), [
    (False, True, False), (False, False, True), (False, True, True), (True, True, False), (True, True, True),
])
def test_fusion_forward_shape(lab, pet, ct):
    net = FusionNet(3, use_lab=lab, use_pet=pet, use_ct=ct, n_lab_features=6 if lab else 0,
                    channels=(4, 8), strides=(2, 2), embed_dim=8)
    inputs = {"lab": torch.rand(2, 6) if lab else None, "pet": torch.rand(2, 1, *SHAPE) if pet else None,
              "ct": torch.rand(2, 1, *SHAPE) if ct else None}
    assert net(**inputs).shape == (2, 1)
    assert set(net.gradcam_layers()) == {m for m, used in (("pet", pet), ("ct", ct)) if used}


def test_fusion_predicts_with_a_missing_modality_using_learned_embedding():
    torch.manual_seed(0)
    net = FusionNet(3, use_lab=True, use_pet=True, use_ct=True, n_lab_features=4, channels=(4, 8), strides=(2, 2),
                    embed_dim=8).eval()
    with torch.no_grad():
        net.missing_ct.fill_(0.5)
        lab, pet = torch.rand(2, 4), torch.rand(2, 1, *SHAPE)
        no_ct = net(pet=pet, lab=lab)
        masked = net(pet=pet, ct=torch.rand(2, 1, *SHAPE), lab=lab, ct_present=torch.tensor([False, False]))
        parts = net.embed(pet=pet, lab=lab)
    assert torch.allclose(no_ct, masked)
    assert torch.allclose(parts["ct"], torch.full((2, 8), 0.5))
    assert net.gradcam_layers() == {"pet": "pet_branch.features.layer1", "ct": "ct_branch.features.layer1"}


def test_modality_dropout_only_in_training_and_never_all_images():
    torch.manual_seed(0)
    net = FusionNet(3, use_lab=False, use_pet=True, use_ct=True, channels=(4, 8), strides=(2, 2), embed_dim=8,
                    modality_dropout=0.9)
    present = net._presence(64, pet=torch.zeros(1), ct=torch.zeros(1), pet_present=None, ct_present=None)
    assert (present["pet"] | present["ct"]).all()
    assert not (present["pet"] & present["ct"]).all()
    net.eval()
    present = net._presence(64, pet=torch.zeros(1), ct=torch.zeros(1), pet_present=None, ct_present=None)
    assert present["pet"].all() and present["ct"].all()


def test_rebuild_from_config_and_strict_load():
    """A net rebuilt from its config has the same architecture and, with the saved weights, the same output."""
    torch.manual_seed(0)
    net = FusionNet(3, use_lab=True, use_pet=True, use_ct=False, n_lab_features=3, channels=(4, 8),
                    strides=(2, 2)).eval()
    copy = build_net(net.config).eval()
    assert copy.config == net.config
    assert {k: v.shape for k, v in copy.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    lab, pet = torch.rand(2, 3), torch.rand(2, 1, *SHAPE)
    with torch.no_grad():
        assert not torch.allclose(copy(pet=pet, lab=lab), net(pet=pet, lab=lab))  # fresh weights differ
        copy.load_state_dict(net.state_dict(), strict=True)
        torch.testing.assert_close(copy(pet=pet, lab=lab), net(pet=pet, lab=lab), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="Missing key"):  # strict: a net with another architecture is refused
        build_net({**net.config, "use_ct": True}).load_state_dict(net.state_dict(), strict=True)


def test_invalid_configurations():
    with pytest.raises(ValueError, match="at least one branch"):
        FusionNet(3, use_lab=False, use_pet=False, use_ct=False)
    with pytest.raises(ValueError, match="n_lab_features >= 1"):
        FusionNet(3, use_lab=True, use_pet=False, use_ct=False, n_lab_features=0)
    with pytest.raises(ValueError, match="same length"):
        FusionNet(3, use_lab=False, use_pet=True, use_ct=False, channels=(4, 8), strides=(2,))


def test_pet_quant_branch_reads_liver_ratio_and_carries_the_readouts():
    from pfs_core.features.readouts import hepatic_readout

    torch.manual_seed(0)
    net = FusionNet(3, use_lab=False, use_pet=True, use_ct=False, channels=(4, 8), strides=(2, 2), embed_dim=8,
                    pet_quant=(60.0, 1.728)).eval()
    assert net.pet_branch.features.layer0.conv.in_channels == 2  # PET and its log ratio to the liver
    pet = torch.rand(3, 1, *SHAPE) * 0.2
    with torch.no_grad():
        embedding = net.embed(pet=pet)["pet"]
    expected = torch.log1p(hepatic_readout(pet * 60.0, 1.728))  # fresh batch norm in eval mode: identity
    assert embedding.shape == (3, 8)
    assert torch.allclose(embedding[:, -4:], expected, atol=1e-3)
    copy = build_net(net.config)
    copy.load_state_dict(net.state_dict(), strict=True)
    assert copy.pet_branch.quant is not None


def test_pet_quant_needs_room_in_the_embedding():
    with pytest.raises(ValueError, match="embed_dim"):
        FusionNet(3, use_lab=False, use_pet=True, use_ct=False, channels=(4, 8), strides=(2, 2), embed_dim=4,
                  pet_quant=(60.0, 1.0))


def test_ct_quant_branch_reads_a_liver_window_and_the_hypodense_readouts():
    net = FusionNet(3, use_lab=False, use_pet=False, use_ct=True, channels=(4, 8), strides=(2, 2), embed_dim=8,
                    ct_quant=(-200.0, 400.0, 1.728)).eval()
    assert net.ct_branch.features.layer0.conv.in_channels == 2
    with torch.no_grad():
        assert net.embed(ct=torch.rand(2, 1, *SHAPE))["ct"].shape == (2, 8)
    build_net(net.config).load_state_dict(net.state_dict(), strict=True)


def test_wide_path_adds_a_linear_logit_of_labs_and_readouts():
    torch.manual_seed(0)
    net = FusionNet(3, use_lab=True, use_pet=True, use_ct=True, n_lab_features=5, channels=(4, 8), strides=(2, 2),
                    embed_dim=8, pet_quant=(60.0, 1.728), ct_quant=(-200.0, 400.0, 1.728), wide=True).eval()
    assert net.wide.in_features == 5 + 4 + 2
    pet, ct, lab = torch.rand(2, 1, *SHAPE) * 0.2, torch.rand(2, 1, *SHAPE), torch.rand(2, 5)
    with torch.no_grad():
        parts = net.embed(pet, ct, lab)
        deep = net.head(torch.cat([parts["lab"], parts["pet"], parts["ct"]], dim=1))
        linear = net.wide(torch.cat([lab, parts["pet"][:, -4:], parts["ct"][:, -2:]], dim=1))
        assert torch.allclose(net(pet, ct, lab), deep + linear)
    assert FusionNet(3, use_lab=False, use_pet=False, use_ct=True, channels=(4, 8), strides=(2, 2),
                     embed_dim=8, wide=True).wide is None  # nothing linear to read
