"""Placeholder tokens and word positions."""
import pytest
import torch

from bench.diffusion.models import load_mini_sd
from bench.diffusion.tokens import add_placeholder_tokens, token_indices


@pytest.fixture()
def parts():
    return load_mini_sd()


def test_placeholders_initialised_from_words_and_only_they_train(parts):
    tok, enc = parts.tokenizer, parts.text_encoder
    before = enc.get_input_embeddings().weight.detach().clone()
    record = add_placeholder_tokens(tok, enc, ["<lesion>", "<skin>"], ["lesion", "dark skin"], trainable=True)
    table = enc.get_input_embeddings().weight
    assert table.shape[0] == before.shape[0] + 2 and len(tok) == table.shape[0]
    torch.testing.assert_close(table[record.ids[0]], before[tok("lesion", add_special_tokens=False).input_ids[0]])
    torch.testing.assert_close(table[record.ids[1]], before[record.init_ids[1]].mean(0))
    ids = parts.token_ids(["a <lesion> on <skin>"])[0]
    assert record.ids[0] in ids.tolist() and record.ids[1] in ids.tolist()
    assert table.requires_grad
    enc(input_ids=ids[None]).last_hidden_state.sum().backward()
    grad = table.grad
    touched = grad.abs().sum(1).nonzero().flatten().tolist()
    assert set(touched) <= set(record.ids) and touched


def test_frozen_placeholders_and_duplicates(parts):
    record = add_placeholder_tokens(parts.tokenizer, parts.text_encoder, ["<c1>"], ["house"], trainable=False)
    assert not parts.text_encoder.get_input_embeddings().weight.requires_grad and record.hook is None
    with pytest.raises(ValueError, match="already"):
        add_placeholder_tokens(parts.tokenizer, parts.text_encoder, ["<c1>"], ["tree"])


def test_token_indices(parts):
    tok = parts.tokenizer
    assert token_indices(tok, "a red circle and a blue square", "circle") == [3]
    assert token_indices(tok, "a red circle and a blue square", "a") == [1, 5]
    with pytest.raises(ValueError, match="does not occur"):
        token_indices(tok, "a red circle", "square")
