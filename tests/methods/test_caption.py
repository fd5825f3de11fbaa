"""bench derm caption (methods/didgen/caption.py): a tiny random BLIP end to end on derm-mini, ground-truth captions,
the caption file format read back by methods.didgen.prompts.read_caption_file, and the CLI's errors."""
import re

import pytest
from typer.testing import CliRunner

from bench.cli import app
from methods.didgen.caption import (CAPTION_COLUMNS, caption_images, clean_caption, load_captioner, token_budget,
                                    write_caption_file)
from methods.didgen.prompts import read_caption_file

WORDS = ["a", "lesion", "on", "skin", "brown", "dark", "round", "with", "hair", "in", "the", "center", "image", "of",
         ",", "."]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A randomly initialised BLIP captioner saved with save_pretrained (BERT word-piece vocab of a few words)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), model_max_length=64)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    torch.manual_seed(0)
    config = BlipConfig(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16, projection_dim=16),
        text_config=dict(vocab_size=len(vocab), hidden_size=16, encoder_hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64, projection_dim=16,
                         bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=3, eos_token_id=3),
        projection_dim=16, image_text_hidden_size=16)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _derm_mini_train(n):
    from bench.data.derm_mini import DermMini

    return DermMini().load("train")[:n]


def test_blip_captions_derm_mini_and_the_reader_reads_them(tiny_blip, tmp_path):
    out = tmp_path / "captions.csv"
    result = CliRunner().invoke(app, ["derm", "caption", "--dataset", "derm-mini", "--model", str(tiny_blip),
                                      "--limit", "3", "--max-new-tokens", "6", "--batch-size", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = read_caption_file(out)
    samples = _derm_mini_train(3)
    assert list(table) == [s.meta["id"] for s in samples]
    # The captions are the model's: words of its vocabulary, exactly what the library call gives on those images.
    captioner = load_captioner(tiny_blip)
    expected = caption_images(captioner, [s.image for s in samples[:2]], max_new_tokens=6, seed=0)
    assert [table[s.meta["id"]] for s in samples[:2]] == expected
    for caption in table.values():
        assert caption and set(re.findall(r"[a-z]+", caption)) <= set(WORDS)
    assert out.read_text().splitlines()[0] == ",".join(CAPTION_COLUMNS)


def test_question_is_a_caption_prefix_for_blip_and_is_not_echoed(tiny_blip):
    captioner = load_captioner(tiny_blip)
    assert not captioner.chat
    image = _derm_mini_train(1)[0].image
    with_prefix = caption_images(captioner, [image], question="a lesion on", max_new_tokens=4)[0]
    assert not with_prefix.startswith("a lesion on")
    assert len(with_prefix.split()) <= 4


def test_from_attributes_writes_derm_minis_ground_truth(tmp_path):
    out = tmp_path / "gt.csv"
    result = CliRunner().invoke(app, ["derm", "caption", "--dataset", "derm-mini", "--from-attributes", "--limit", "4",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = read_caption_file(out)
    samples = _derm_mini_train(4)
    assert len(table) == 4
    for s in samples:
        prefix = "An image of lesion on skin. "
        assert s.prompt.startswith(prefix) and table[s.meta["id"]] == s.prompt[len(prefix):]


def test_missing_model_folder_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "no-such-model"
    result = CliRunner().invoke(app, ["derm", "caption", "--dataset", "derm-mini", "--model", str(missing),
                                      "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "c.csv").exists()


def test_model_and_from_attributes_are_exclusive(tiny_blip, tmp_path):
    result = CliRunner().invoke(app, ["derm", "caption", "--dataset", "derm-mini", "--model", str(tiny_blip),
                                      "--from-attributes", "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 2 and "exactly one" in result.output


def test_caption_file_round_trip_and_atomic_replace(tmp_path):
    out = tmp_path / "c.csv"
    out.write_text("old")
    rows = [("ISIC_0000000", 'A "dark", irregular lesion,\nwith hair.'), ("ISIC_0000001", "A pink lesion.")]
    assert write_caption_file(out, rows) == 2
    assert read_caption_file(out) == {"ISIC_0000000": 'A "dark", irregular lesion, with hair.',
                                      "ISIC_0000001": "A pink lesion."}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]  # no temporary file left behind


def test_clean_caption():
    q = "This is an  image of skin lesion, describe it."
    assert clean_caption("this is an image of skin lesion, describe it.  A brown\n lesion.", q) == "A brown lesion."
    assert clean_caption("user describe it assistant: A round lesion on pale skin.", chat_header=True) == \
        "A round lesion on pale skin."
    assert clean_caption("An image of lesion on skin. A dark lesion.") == "A dark lesion."
    assert clean_caption("A lesion with an assistant marker.") == "A lesion with an assistant marker."


def test_token_budget_caps_at_the_position_table():
    from types import SimpleNamespace

    config = SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=64))
    assert token_budget(config, prompt_len=4, requested=20) == 20
    assert token_budget(config, prompt_len=4, requested=200) == 60
    assert token_budget(SimpleNamespace(), prompt_len=4, requested=200) == 200
