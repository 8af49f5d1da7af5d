"""The core modules' messages: English str() as before, the same message in French through its key."""
import copy
import re
from pathlib import Path

import pytest

from sdtrainer.checkpoint import CheckpointError, detect_config
from sdtrainer.config import ConfigError, check_config, load_config
from sdtrainer.dataset import instance_set
from sdtrainer.images import DatasetError
from sdtrainer.messages import LANGUAGES, MESSAGES, Message, field_names, message_of, say_in
from sdtrainer.session import oom_message
from sdtrainer.trainer import RunPaths


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_is_in_english_and_french_with_the_same_fields(key):
    entry = MESSAGES[key]
    assert set(entry) == set(LANGUAGES) and all(entry[lang].strip() for lang in LANGUAGES), key
    assert field_names(entry["en"]) == field_names(entry["fr"]), key


def test_every_message_key_used_in_the_core_exists():
    code = "\n".join(p.read_text() for p in Path("sdtrainer").glob("*.py"))
    used = set(re.findall(r'Message\(\s*"([a-z0-9_]+)"', code))
    assert used and not used - set(MESSAGES)


def test_a_message_is_its_english_text_and_keeps_key_and_fields():
    message = Message("ckpt_not_found", path="/m/x.ckpt")
    assert message == "Checkpoint not found: /m/x.ckpt. Check the path." and message.key == "ckpt_not_found"
    assert say_in(message, "fr") == "Modèle introuvable : /m/x.ckpt. Vérifiez le chemin."
    assert say_in("plain English", "fr") == "plain English"
    again = copy.deepcopy(message)  # session snapshots are deep copies
    assert again == message and again.key == message.key and say_in(again, "fr") == say_in(message, "fr")


def test_an_error_keeps_its_english_str_and_says_itself_in_french():
    with pytest.raises(CheckpointError) as caught:
        detect_config({"lora_unet_down.lora_down.weight": __import__("torch").zeros(1)})
    assert str(caught.value).startswith("This is a LoRA/LyCORIS file")
    assert say_in(message_of(caught.value), "fr").startswith("C'est un fichier LoRA/LyCORIS")
    assert "v1-5-pruned-emaonly.safetensors" in say_in(message_of(caught.value), "fr")


def test_nested_and_listed_fields_are_said_in_the_same_language(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "b.png").write_bytes(b"not a png either")
    with pytest.raises(DatasetError) as caught:
        instance_set(tmp_path, "ohwx", "person", 64)
    assert "2 files were unreadable (a.png, b.png)" in str(caught.value)
    french = say_in(message_of(caught.value), "fr")
    assert "Aucune image d'entraînement utilisable" in french and "2 fichiers : illisible (a.png, b.png)" in french
    assert "photos du sujet" in french
    with pytest.raises(ConfigError) as caught:
        check_config(load_config("24gb", values={"ema_decay": 1.0, "model": "m", "images": "i", "token": "t",
                                                 "class_word": "c"}))
    assert say_in(message_of(caught.value), "fr") == "ema_decay doit être strictement entre 0 et 1, pas 1.0."


def test_out_of_memory_advice_in_french(tmp_path):
    message = oom_message(load_config("24gb"), 3, RunPaths(tmp_path))
    assert message.startswith("Out of GPU memory at step 3 with the 24gb preset")
    assert say_in(message, "fr").startswith("Mémoire de la carte épuisée à l'étape 3 avec le préréglage 24gb")
    assert "12gb" in say_in(message, "fr")
    smallest = oom_message(load_config("8gb"), 5, RunPaths(tmp_path))  # graphed: turning the graphs off is the way
    assert "cuda_graphs to false" in smallest and "cuda_graphs sur false" in say_in(smallest, "fr")
    eager = oom_message(load_config("8gb", values={"cuda_graphs": False}), 5, RunPaths(tmp_path))
    assert "cuda_graphs" not in eager and "lower the resolution" in eager


def test_message_of_plain_errors_is_their_text():
    assert message_of(ValueError("plain")) == "plain" and not isinstance(message_of(ValueError("x")), Message)
