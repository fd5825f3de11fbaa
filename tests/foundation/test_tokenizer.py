"""The offline CLIP tokenizer: known words are one token, others fall back to pieces."""
from bench.foundation.tokenizer import build_clip_tokenizer, write_word_bpe


def test_known_words_are_single_tokens_and_unknown_words_still_tokenize(tmp_path):
    words = ["circle", "square", "lesion", "cardiomegaly", "a", "and"]
    tok = build_clip_tokenizer(words, tmp_path / "tok")
    assert (tmp_path / "tok" / "vocab.json").is_file() and (tmp_path / "tok" / "merges.txt").is_file()
    for w in words:
        assert tok.convert_ids_to_tokens(tok(w, add_special_tokens=False).input_ids) == [w + "</w>"]
    pieces = tok(w := "squircle", add_special_tokens=False).input_ids
    assert len(pieces) > 1 and tok.decode(pieces).replace(" ", "") == w
    ids = tok("a circle", padding="max_length").input_ids
    assert len(ids) == 77 and ids[0] == tok.bos_token_id and ids[-1] == tok.pad_token_id


def test_saved_tokenizer_reloads_identically(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_clip_tokenizer(["lesion", "skin", "effusion"], tmp_path / "tok")
    again = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    text = "a lesion on skin with effusion, unknownword"
    assert again(text).input_ids == tok(text).input_ids
    files = write_word_bpe(["x"], tmp_path / "bare")
    assert files[1].read_text().startswith("#version")
