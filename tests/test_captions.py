"""sdtrainer/captions.py: captions from .txt files, @ templates and file names; the prompt lint and its fix;
which tokens are common words."""
import pytest

from conftest import save, scene
from ldm.tokenizer import get_tokenizer
from sdtrainer.captions import (add_class_word, caption_for, caption_text, class_caption_for, is_common_token,
                                prompt_lint)


def test_captions(tmp_path):
    assert caption_for(tmp_path / "IMG_1234.jpg", "joepenna", "person") == "joepenna person"
    (tmp_path / "b.txt").write_text("  a photo of joepenna person smiling \n")
    assert caption_for(tmp_path / "b.jpg", "joepenna", "person") == "a photo of joepenna person smiling"
    assert caption_for(tmp_path / "photo of joepenna person at the beach (1).jpg", "joepenna", "person") \
        == "photo of joepenna person at the beach"
    assert caption_for(tmp_path / "photo_of_joepenna-person_02.png", "joepenna", "person") \
        == "photo of joepenna person"
    assert caption_for(tmp_path / "joepenna_at_the_beach.jpg", "joepenna", "person") \
        == "joepenna person at the beach"
    assert caption_for(tmp_path / "photo of a person at the beach.jpg", "joepenna", "person") == "joepenna person"
    assert class_caption_for(tmp_path / "b.jpg", "person") == "a photo of joepenna person smiling"
    assert class_caption_for(tmp_path / "c.jpg", "person") == "person"


def test_add_class_word_fixes_what_prompt_lint_finds():
    fixed = add_class_word("a photo of joepenna, and joepenna person smiling", "joepenna", "person")
    assert fixed == "a photo of joepenna person, and joepenna person smiling"
    assert prompt_lint(fixed, "joepenna", "person") is None
    assert add_class_word("a photo of joepenna", "joepenna", "") == "a photo of joepenna"


def test_prompt_lint():
    assert prompt_lint("a photo of joepenna person, 35mm", "joepenna", "person") is None
    assert prompt_lint("JoePenna  Person in the snow", "joepenna", "person") is None
    assert prompt_lint("a photo of a person", "joepenna", "person") is None
    warning = prompt_lint("a photo of joepenna", "joepenna", "person")
    assert warning is not None and "`joepenna person`" in warning and "not `joepenna` alone" in warning
    assert prompt_lint("joepenna person next to joepenna", "joepenna", "person") is not None
    assert prompt_lint("joepenna persons", "joepenna", "person") is not None


def test_common_words_and_frequent_clip_tokens_are_common():
    tokenizer = get_tokenizer()
    assert is_common_token("dog", tokenizer) and is_common_token("Person", tokenizer)  # the list, any case
    assert is_common_token("sunset", tokenizer)  # not in the list: one frequent CLIP token
    assert not is_common_token("ohwx", tokenizer) and not is_common_token("sks", tokenizer)  # rare single tokens
    assert not is_common_token("joepenna", tokenizer)  # three tokens


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_captions_saved_by_any_editor_keep_their_words(tmp_path, encoding):
    image = save(scene(1), tmp_path / "a.png")
    (tmp_path / "a.txt").write_bytes("ohwx person at the café".encode(encoding))
    assert caption_text(image) == "ohwx person at the café"

