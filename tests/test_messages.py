"""The core modules' messages: English str() as before, the same message in French through its key; one
catalogue for the core, one for the page's own words, and no raise that hands a person plain text."""
import ast
import copy
import re
from pathlib import Path

import pytest

from sdtrainer.captions import prompt_lint
from sdtrainer.checks import validate_images
from sdtrainer.checkpoint import CheckpointError, detect_config
from sdtrainer.concepts import run_subjects
from sdtrainer.config import ConfigError, check_config, load_config
from sdtrainer.dataset import instance_set
from sdtrainer.images import DatasetError
from sdtrainer.messages import LANGUAGES, MESSAGES, Message, field_names, message_of, say_in
from sdtrainer.session import oom_message
from sdtrainer.trainer import RunPaths
from sdtrainer.ui.i18n import STRINGS

# Raised with text on purpose: a bug in sdtrainer (RuntimeError and its kinds), another library's words that are
# caught and said in ours (Pillow's, NVML's), argparse's own English, Python's attribute protocol (a package's
# __getattr__), and UIError, whose text is a STRINGS key.
NOT_FOR_PEOPLE = {"RuntimeError", "ProcessFailed", "GpuQueryError", "Image.DecompressionBombError",
                  "argparse.ArgumentTypeError", "AttributeError", "UIError"}
# Arithmetic on tensors: what they raise is a programmer's mistake, never a person's.
INTERNAL_MODULES = {"flat_params.py", "stochastic_rounding.py"}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_is_in_english_and_french_with_the_same_fields(key):
    entry = MESSAGES[key]
    assert set(entry) == set(LANGUAGES) and all(entry[lang].strip() for lang in LANGUAGES), key
    assert field_names(entry["en"]) == field_names(entry["fr"]), key


def user_facing_modules() -> list[Path]:
    return [p for p in Path("sdtrainer").rglob("*.py") if p.name not in INTERNAL_MODULES] + [Path("webui.py")]


def test_every_message_key_used_exists():
    code = "\n".join(p.read_text() for p in user_facing_modules())
    used = set(re.findall(r'Message\(\s*"([a-z0-9_]+)"', code))
    assert used and not used - set(MESSAGES)


def test_a_key_is_in_one_catalogue_only():
    assert not set(MESSAGES) & set(STRINGS)


def is_text(node: ast.AST) -> bool:
    """A string literal, an f-string, str(...), or text built from them with +, % or .format()."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return is_text(node.left) or is_text(node.right)
    if isinstance(node, ast.IfExp):
        return is_text(node.body) or is_text(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str":
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
        and is_text(node.func.value)


def raises_with_text(source: str) -> list[str]:
    """`raise Error(<text>)` statements of a module, where the text is not a Message (see NOT_FOR_PEOPLE)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            kind = ast.unparse(node.exc.func)
            if kind not in NOT_FOR_PEOPLE and is_text(node.exc.args[0]):
                found.append(f"{node.lineno}: raise {kind}({ast.unparse(node.exc.args[0])[:70]})")
    return found


def test_the_check_finds_text_in_a_raise_and_lets_a_message_pass():
    source = """
def f(key, e):
    raise ConfigError(f"Set {key}.")
    raise ConfigError("Set " + key)
    raise CheckpointError(str(e))
    raise ValueError("{} is bad".format(key))
    raise ConfigError(Message("cfg_set", key=key, hint="h"))
    raise RuntimeError(f"a bug: {key}")
    raise UIError("err_no_model")
"""
    assert [line.split(":")[0] for line in raises_with_text(source)] == ["3", "4", "5", "6"]


def test_no_raise_hands_a_person_plain_text():
    """Every error a person reads is a Message, so the web page says it in French too (no "Impossible : <English>")."""
    found = [f"{path}:{line}" for path in user_facing_modules() for line in raises_with_text(path.read_text())]
    assert not found, "raise with a Message instead:\n" + "\n".join(found)


def logs_with_text(source: str) -> list[str]:
    """The log lines of a module that are not a Message: `log(emit, step, <text>)` (sdtrainer.trainer.events.log)
    and `Event(EventKind.LOG, step, {"message": <text>})`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name, args = ast.unparse(node.func), node.args
        if name == "log" and len(args) == 3:
            message = args[2]
        elif name == "Event" and len(args) == 3 and ast.unparse(args[0]) == "EventKind.LOG" \
                and isinstance(args[2], ast.Dict):
            message = next((v for k, v in zip(args[2].keys, args[2].values)
                            if isinstance(k, ast.Constant) and k.value == "message"), None)
        else:
            continue
        if message is not None and is_text(message):
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_the_check_finds_text_in_a_log_line_and_lets_a_message_pass():
    source = """
def f(emit, step, e):
    log(emit, step, f"Paused after step {step}.")
    log(emit, step, "Resumed.")
    log(emit, step, Message("train_stopping", step=step) if step else "Stopping before step 1.")
    emit(Event(EventKind.LOG, step, {"message": "Cached " + str(e)}))
    log(emit, step, Message("train_paused", step=step))
    emit(Event(EventKind.LOG, step, {"message": Message("train_resumed")}))
    emit(Event(EventKind.PROGRESS, step, {"message": "not a log line"}))
"""
    assert [line.split(":")[0] for line in logs_with_text(source)] == ["3", "4", "5", "6"]


def test_the_trainer_logs_nothing_but_messages():
    """Every line a run writes to the Training tab's log is a Message, so the page says it in French too."""
    found = [f"{path}:{line}" for path in user_facing_modules() for line in logs_with_text(path.read_text())]
    assert not found, "log a Message instead:\n" + "\n".join(found)


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
    lora = oom_message(load_config("lora-8gb"), 5, RunPaths(tmp_path))  # its graphs hold 0.13 GiB: not the way
    assert load_config("lora-8gb").cuda_graphs and "cuda_graphs" not in lora and "lower the resolution" in lora


def test_message_of_plain_errors_is_their_text():
    assert message_of(ValueError("plain")) == "plain" and not isinstance(message_of(ValueError("x")), Message)


def test_errors_checks_and_lint_that_were_english_only_say_themselves_in_french(tmp_path):
    cfg = load_config(values={"images": "photos", "token": "ohwx", "class_word": "person"})
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    assert str(caught.value) == "Set model: the base SD v1 checkpoint."
    assert say_in(message_of(caught.value), "fr") == "Indiquez model : le modèle SD v1 de départ."
    with pytest.raises(ConfigError) as caught:
        load_config(values={"stepz": 3})
    assert str(caught.value) == "settings: unknown setting 'stepz'; did you mean 'steps'?"
    assert say_in(message_of(caught.value), "fr") == "réglages : réglage 'stepz' inconnu ; vouliez-vous dire 'steps' ?"
    with pytest.raises(DatasetError) as caught:
        run_subjects(load_config(values={"images": "", "concepts": [{"token": "a", "class_word": "b",
                                                                     "images": str(tmp_path)}]}))
    assert say_in(message_of(caught.value), "fr").startswith("concepts[0] : aucune image dans")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    [found] = validate_images([tmp_path / "bad.png"], 64).issues
    assert found.message.startswith("Not an image file") and say_in(found.message, "fr").startswith("Pas un fichier")
    lint = prompt_lint("a photo of ohwx", "ohwx", "person")
    assert lint.startswith("Write `ohwx person`") and say_in(lint, "fr").startswith("Écrivez `ohwx person`")
