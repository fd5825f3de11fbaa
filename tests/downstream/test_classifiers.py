import pytest
import torch

from bench.downstream.classifiers import CLASSIFIERS, IMAGENET_FILES, build_classifier
from bench.downstream.cls_trainer import ClsTrainConfig, predict_logits, train_classifier
from bench.metrics.extractors import MissingWeightsError


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "densenet121", "vit-b16", "efficientnet-v2", "mobilenet-v2"])
def test_mini_variants(name):
    model = CLASSIFIERS.get(name)(num_classes=7, variant="mini", image_size=32)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_paper_loading_from_local_files(tmp_path):
    """torchvision architectures read the torchvision file names; DenseNet's legacy ``norm.1`` keys are renamed."""
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / IMAGENET_FILES["resnet18"])
    model = build_classifier("resnet18", 7, "paper", pretrained=True, weights_dir=tmp_path)
    assert torch.equal(model.net.conv1.weight, ref.conv1.weight)
    assert model.net.fc.out_features == 7

    dense = torchvision.models.densenet121(weights=None)
    legacy = {k.replace("norm1", "norm.1").replace("conv1", "conv.1") if "denselayer" in k else k: v
              for k, v in dense.state_dict().items()}
    torch.save(legacy, tmp_path / IMAGENET_FILES["densenet121"])
    model = build_classifier("densenet121", 7, "paper", pretrained=True, weights_dir=tmp_path)
    key = "features.denseblock1.denselayer1.norm1.running_var"
    assert torch.equal(model.net.state_dict()[key], dense.state_dict()[key])
    assert model.net.classifier.out_features == 7


@pytest.mark.parametrize("name,build", [("efficientnet-v2", "efficientnet_v2_s"), ("mobilenet-v2", "mobilenet_v2")])
def test_paper_loading_of_the_chapter_5_architectures(tmp_path, name, build):
    """EfficientNet-V2-S and MobileNet-V2 (skin-tone annotators) read torchvision's files; the head gets 3 classes."""
    import torchvision

    torch.manual_seed(0)
    ref = getattr(torchvision.models, build)(weights=None)
    torch.save(ref.state_dict(), tmp_path / IMAGENET_FILES[name])
    model = build_classifier(name, 3, "paper", pretrained=True, weights_dir=tmp_path)
    first = next(iter(ref.state_dict()))
    assert torch.equal(model.net.state_dict()[first], ref.state_dict()[first])
    assert model.net.classifier[1].out_features == 3
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_missing_weights_is_one_clear_line(tmp_path):
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        build_classifier("vgg16", 7, "paper", pretrained=True, weights_dir=tmp_path)
    with pytest.raises(ValueError, match="224"):
        build_classifier("vit-b16", 7, "paper", image_size=64, pretrained=False)


def test_trainer_learns_colour_classes_and_keeps_the_best_epoch():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (96,))
    images = torch.rand(96, 3, 16, 16) * 0.3
    for k in range(3):
        images[labels == k, k] += 0.6
    val_labels = torch.arange(3).repeat(8)
    val = torch.rand(24, 3, 16, 16) * 0.3
    for k in range(3):
        val[val_labels == k, k] += 0.6
    torch.manual_seed(1)
    model = build_classifier("resnet18", 3, "mini", image_size=16)
    result = train_classifier(model, images, labels, val, val_labels,
                              ClsTrainConfig(lr=0.05, batch_size=16, max_epochs=12, patience=6), seed=0)
    assert result.best_val_accuracy > 0.9
    best = max(h["val_accuracy"] for h in result.history)
    assert result.best_val_accuracy == best
    acc = (predict_logits(result.model, val).argmax(1) == val_labels).float().mean().item()
    assert acc == pytest.approx(best)
