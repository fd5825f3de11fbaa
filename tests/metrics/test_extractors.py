import unittest.mock

import pytest
import torch

from bench.metrics import extractors as E


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A randomly initialised torch-fidelity FID Inception state dict saved as the real file name."""
    import torch_fidelity.feature_extractor_inceptionv3 as fi

    torch.manual_seed(0)
    with unittest.mock.patch.object(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            unittest.mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: None):
        net = fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    folder = tmp_path_factory.mktemp("w")
    state = net.state_dict()
    torch.save(state, folder / E.INCEPTION_FILE)
    return folder, state


def test_inception_loads_local_file_and_matches_torchmetrics_fid(inception_file):
    from torchmetrics.image.fid import FrechetInceptionDistance

    folder, state = inception_file
    ext = E.load_extractor("inception-v3", weights_dir=folder)
    for k, v in state.items():
        assert torch.equal(ext.net.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 3, 32, 32, generator=g)
    feats = ext(real)
    assert feats.shape == (3, 2048)
    # the same weights through torchmetrics' own FID path (uint8 quantisation, 299 resize) give the same features
    ref = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(folder / E.INCEPTION_FILE))
    with torch.no_grad():
        ref_feats = ref.inception((real * 255).byte())
    assert torch.allclose(feats, ref_feats.reshape(3, -1), atol=1e-5)


def test_missing_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(E.WEIGHTS_ENV, raising=False)
    with pytest.raises(E.MissingWeightsError, match="BENCH_WEIGHTS"):
        E.load_extractor("inception-v3")
    for name in E.available_extractors():
        with pytest.raises(E.MissingWeightsError) as err:
            E.load_extractor(name, weights_dir=tmp_path)
        assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    monkeypatch.setenv(E.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(E.MissingWeightsError, match="dinov2-base"):
        E.load_extractor("dinov2-base")
    with pytest.raises(KeyError, match="Did you mean: dinov2-base"):
        E.load_extractor("dinov2-bse")


def test_pickled_module_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module, not a state dict
    with pytest.raises(ValueError, match="weights_only"):
        E.load_state_dict(tmp_path / "module.pt")


def test_lpips_alexnet_trunk_from_torchvision_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    alex = torchvision.models.alexnet()
    torch.save(alex.state_dict(), tmp_path / E.ALEXNET_FILE)
    model = E.load_lpips(weights_dir=tmp_path)
    assert torch.equal(getattr(model.net.slice1, "0").weight, alex.features[0].weight)
    assert torch.equal(getattr(model.net.slice5, "10").bias, alex.features[10].bias)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(model(x, x).flatten(), torch.zeros(2), atol=1e-6)


def test_clip_and_dinov2_from_local_folders(tiny_clip_dir, tiny_dinov2_dir):
    from transformers import CLIPModel, Dinov2Model

    clip = E.load_clip(tiny_clip_dir)
    x = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        pooled, projected = clip["image"](x), clip["image_projected"](x)
        ref = CLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
        pixels = (E.resize_center_crop(x, 32) - torch.tensor(E.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(E.CLIP_STD).view(1, 3, 1, 1)
        expected = ref.get_image_features(pixel_values=pixels)
        expected = getattr(expected, "pooler_output", expected)  # transformers 5 may return an output object
        assert torch.allclose(projected, expected, atol=1e-5)
    assert pooled.shape == (2, 16) and projected.shape == (2, 8)
    assert clip["text"](["a dog", "a red cat"]).shape == (2, 8)
    dino = E.load_extractor("dinov2-base", weights_dir=tiny_dinov2_dir.parent)
    with torch.no_grad():
        feats = dino(x)
        ref = Dinov2Model.from_pretrained(tiny_dinov2_dir, local_files_only=True).eval()
        pixels = (E.resize_center_crop(x, 256, 224) - torch.tensor(E.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(E.IMAGENET_STD).view(1, 3, 1, 1)
        assert torch.allclose(feats, ref(pixel_values=pixels).pooler_output, atol=1e-5)


def test_xrv_densenet_state_dict(tmp_path):
    import torchxrayvision as xrv
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = xrv.models.DenseNet(weights=None, num_classes=18)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / f"{E.XRV_STEM}.safetensors"))
    model = E.load_extractor("xrv-densenet121-res224-all", weights_dir=tmp_path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        f = model(x)
        net.eval()
        ref = net.features2(torch.nn.functional.interpolate(x.mean(1, keepdim=True), size=(224, 224), mode="bilinear",
                                                            align_corners=False, antialias=True) * 2048 - 1024)
        out = model.classify(x)
    assert f.shape == (2, 1024) and torch.allclose(f, ref, atol=1e-4)
    assert out.shape == (2, 18) and model.targets[10] == "Cardiomegaly"


def test_register_extractor_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        E.register_extractor("dinov2-base", lambda weights_dir=None: None)


def test_registry_names_resolve_to_expected_folders(tiny_clip_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_clip_dir, tmp_path / E.CLIP_B32_DIR)
    clip = E.load_extractor("clip-vit-b-32", weights_dir=tmp_path)
    assert clip["image"](torch.rand(1, 3, 32, 32)).shape == (1, 16)
    clip_l = E.load_extractor("clip-vit-l-14", weights_dir=tiny_clip_dir.parent)
    assert clip_l["text"](["a"]).shape == (1, 8)
