"""Captions and prompt advice: what each training image is called, and the prompt mistake to warn about.

    caption_for(Path("photos/a.jpg"), "joepenna", "person")            # .txt beside it, @ template, file name, default
    class_caption_for(Path("reg/b.png"), "person")                     # .txt beside it, @ template, class word
    prompt_lint("a photo of joepenna", "joepenna", "person")           # warns: write `joepenna person`
    add_class_word("a photo of joepenna", "joepenna", "person")        # "a photo of joepenna person"

The subject's photos ("instance" images) are captioned ``"<token> <class>"`` (``joepenna person``) unless a
caption says otherwise, the regularization ("class") images the bare class word.
"""
import re
from pathlib import Path

from sdtrainer.messages import Message

TRAILING_COPY_NUMBER = re.compile(r"(?:\s*\(\d+\)|\s+\d+|(?<=\D)\d+)\s*$")
COMMON_TOKEN_ID = 10_000  # single CLIP tokens below this id are frequent merges: words the model knows well
# Very common English words (and photo words) that make poor subject tokens.
COMMON_WORDS = frozenset("""
a about after all also an and any are as at back be because been before being between big black blue
body boy but by can car cat child city come could day did do dog down each even every eye face family
find first for from get girl give go good great green hair hand happy has have he her here him his home
house how i if in into is it its just kid kind know lady last life light like little long look love make
man many me men more most mother my new night no not now of off old on one only or other our out over
own people person photo picture portrait red right say see she should small so some take than that the
their them then there these they thing think this those time to two up us use very want was water way
we well what when where which white who will with woman women work world would year you young your
baby beach book brother cool dad dark earth fire flower food friend fun game gold king mom moon
music name nice party queen rain rock sea sky snow star style sun sweet team tree
""".split())


# ---------------------------------------------------------------- caption files

def caption_text(image_path: Path) -> str | None:
    """The stripped text of the ``.txt`` file beside an image (same stem), or None when absent or empty."""
    txt = image_path.with_suffix(".txt")
    if not txt.is_file():
        return None
    return decode_text(txt.read_bytes()).strip() or None


def decode_text(data: bytes) -> str:
    """A caption file's text, as editors save it: UTF-8 (with or without a BOM), UTF-16 with a BOM (Windows
    Notepad's "Unicode"), else Windows-1252 (older Windows editors), never a silent mess of replacement marks."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


# ---------------------------------------------------------------- captions

def word_pattern(words: str) -> str:
    """Regex for ``words`` as whole words, any whitespace between them."""
    return r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words.split()) + r"(?!\w)"


def bare_token_pattern(token: str, class_word: str) -> str:
    """Regex for ``token`` when the class word does not follow it."""
    return word_pattern(token) + r"(?!\s+" + r"\s+".join(re.escape(w) for w in class_word.split()) + r"(?!\w))"


def caption_from_filename(stem: str) -> str:
    """``photo_of_joepenna-person (2)`` -> ``photo of joepenna person``: separators to spaces, copy numbers off."""
    text = " ".join(re.sub(r"[_-]+", " ", stem).split())
    while TRAILING_COPY_NUMBER.search(text) and TRAILING_COPY_NUMBER.sub("", text):
        text = TRAILING_COPY_NUMBER.sub("", text).strip()
    return text


def template_caption(stem: str, token: str, class_word: str) -> str | None:
    """The caption template after ``@`` in a file name, or None: ``img-001@S_being_a_good_C`` with token
    ``effy`` and class ``dog`` -> ``effy being a good dog`` (``_`` are spaces; the words ``S`` and ``C`` stand
    for the token and the class word; a copy number `` (2)`` at the end is dropped)."""
    if "@" not in stem:
        return None
    words = re.sub(r"\s*\(\d+\)\s*$", "", stem.split("@", 1)[1]).replace("_", " ").split()
    text = " ".join({"S": token, "C": class_word}.get(w, w) for w in words).strip()
    return " ".join(text.split()) or None


def caption_for(image_path: str | Path, token: str, class_word: str) -> str:
    """Instance caption: the ``.txt`` beside the image, else an ``@`` template in the file name
    (``template_caption``), else a file name holding the token, else ``token class``.

    A file-name caption that has the token but not the class word right after it gets the class word
    inserted (``joepenna at the beach`` -> ``joepenna person at the beach``), as ``prompt_lint`` advises.
    """
    return caption_and_source(image_path, token, class_word)[0]


def caption_and_source(image_path: str | Path, token: str, class_word: str) -> tuple[str, str]:
    """``caption_for``'s caption and the rule that gave it: ``txt``, ``template``, ``file_name`` or ``default``."""
    image_path = Path(image_path)
    text = caption_text(image_path)
    if text is not None:
        return text, "txt"
    templated = template_caption(image_path.stem, token, class_word)
    if templated is not None:
        return templated, "template"
    name = caption_from_filename(image_path.stem)
    if token and re.search(word_pattern(token), name, re.IGNORECASE):
        return add_class_word(name, token, class_word), "file_name"
    return f"{token} {class_word}", "default"


def class_caption_for(image_path: str | Path, class_word: str) -> str:
    """Regularization caption: the ``.txt`` beside the image, else an ``@`` template (``C`` = the class word),
    else the class word."""
    image_path = Path(image_path)
    text = caption_text(image_path)
    if text is None:
        text = template_caption(image_path.stem, "", class_word)
    return text if text is not None else class_word


# ---------------------------------------------------------------- prompt and token advice

def prompt_lint(prompt: str, token: str, class_word: str) -> Message | None:
    """A warning when the prompt uses the token without the class word right after it; None otherwise."""
    if not token.strip() or not re.search(bare_token_pattern(token, class_word), prompt, re.IGNORECASE):
        return None
    return Message("lint_bare_token", token=token, class_word=class_word)


def add_class_word(prompt: str, token: str, class_word: str) -> str:
    """The prompt_lint fix: ``a photo of joepenna`` -> ``a photo of joepenna person``."""
    if not token.strip() or not class_word.strip():
        return prompt
    return re.sub(bare_token_pattern(token, class_word), lambda m: f"{m.group(0)} {class_word}", prompt,
                  flags=re.IGNORECASE)


def is_common_token(token: str, tokenizer) -> bool:
    """A common word: in COMMON_WORDS, or one frequent whole-word CLIP token (low merge id)."""
    if token.lower() in COMMON_WORDS:
        return True
    if not token.isalpha() or tokenizer.token_count(token) != 1:
        return False
    encode = getattr(tokenizer, "encode", None)
    return encode(token)[0] < COMMON_TOKEN_ID if encode else len(token) <= 6
