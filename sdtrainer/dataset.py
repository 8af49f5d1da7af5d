"""Training images for DreamBooth: find, check, load, caption and serve them to the trainer.

The subject's photos ("instance" images) are captioned ``"<token> <class>"`` (``joepenna person``) and
the regularization ("class") images the bare class word. Everything here works on plain files:

    report = validate_images(list_images("photos/"), resolution=512)   # never raises on a bad image
    print(report.format())                                              # errors are skipped, warnings kept
    image = load_image("photos/a.jpg", 512, crop="face")               # RGB, upright, 512 x 512
    result = prepare_images(report.ok_paths, "outputs/prepared", 512)  # PNGs for the trainer; sources untouched
    caption_for(Path("photos/a.jpg"), "joepenna", "person")            # .txt beside it, file name, or default
    prompt_lint("a photo of joepenna", "joepenna", "person")           # warns: write `joepenna person`

    data = InstanceDataset("photos/", "joepenna", "person", 512, repeats=100)
    data.set_epoch(epoch)   # flips depend on (seed, epoch, index) only, so a resumed run sees the same data
    data[0]                 # {"pixel_values": FloatTensor [3, 512, 512] in [-1, 1], "caption": str, "path": str}

Checks (``validate_images``): unreadable, truncated or non-image files and images smaller than half the
training resolution are errors; CMYK, transparency, EXIF rotation, grayscale, low resolution, blur and
near-duplicates are warnings. ``subject_issues(prepared, class_word)`` adds warnings about the set as a
subject: no face for a person class, the same background in most photos. Face detection uses OpenCV's
Haar cascade (``opencv-python-headless``), imported on first use.
"""
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from sdtrainer.messages import MESSAGES as CORE_MESSAGES, Message
from sdtrainer.seeds import seeded_uniform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
ERROR = "error"
WARNING = "warning"
Severity = Literal["error", "warning"]

# Sharpness = variance of the 4-neighbour Laplacian of the grayscale image, its short side brought down
# to BLUR_CHECK_SIZE px (0..255 values). Sharp photos score in the hundreds to thousands; out-of-focus or
# motion-blurred ones, and nearly featureless ones, score below 100 (the usual OpenCV rule of thumb).
BLUR_CHECK_SIZE = 256
BLUR_THRESHOLD = 100.0
# Larger images are refused from their header, before decoding (a photo from a 100 MP camera still fits).
MAX_PIXELS = 100_000_000
# Near-duplicates: 64-bit difference hashes (dHash) at most this many bits apart.
DUPLICATE_MAX_DISTANCE = 5
FACE_CASCADE = "haarcascade_frontalface_default.xml"
FACE_DETECT_SIZE = 640  # images are shrunk to this long side before face detection (speed)
COMMON_TOKEN_ID = 10_000  # single CLIP tokens below this id are frequent merges: words the model knows well
MIN_PHOTOS, MAX_PHOTOS = 5, 20
# Prepared squares smaller than this are checked for a face on their photo: OpenCV's detector needs ~100 px faces
# to be reliable, and the demo model's 64 px squares hold far fewer.
FACE_CHECK_MIN_SIDE = 128
# Class words whose photos should show a face (subject_issues warns when OpenCV finds none).
PERSON_CLASSES = frozenset("person man woman boy girl child kid baby lady guy men women people teenager".split())
# Same background: the outer ring (BACKGROUND_RING px wide) of a BACKGROUND_SIZE px thumbnail of each square,
# compared as mean absolute difference (0..255); an image whose ring is within SAME_BACKGROUND_DISTANCE of at
# least half of the others' is flagged.
BACKGROUND_SIZE, BACKGROUND_RING, SAME_BACKGROUND_DISTANCE = 16, 3, 10.0
TRAILING_COPY_NUMBER = re.compile(r"(?:\s*\(\d+\)|\s+\d+|(?<=\D)\d+)\s*$")
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


class DatasetError(ValueError):
    """A problem with the user's images or settings; the message says what to do."""


class Crop(str, Enum):
    """How a non-square image becomes square."""
    CENTER = "center"  # the middle of the image
    FACE = "face"      # centred on the largest detected face; the middle when none is found


@dataclass
class ImageIssue:
    """One finding about one image; ``message`` is plain English and says what to do."""
    path: Path
    severity: Severity  # "error": the image is skipped; "warning": it is used as is (or fixed on load)
    code: str  # unreadable, too_small, low_resolution, cmyk, alpha, exif_rotated, grayscale, blurry, near_duplicate,
    #            and from subject_issues: no_face, same_background
    message: str


@dataclass
class ValidationReport:
    """What ``validate_images`` found: the usable paths, in input order, and every issue."""
    paths: list[Path] = field(default_factory=list)
    ok_paths: list[Path] = field(default_factory=list)
    issues: list[ImageIssue] = field(default_factory=list)
    duplicates: list[tuple[Path, Path, int]] = field(default_factory=list)  # (first, second, bits apart)

    @property
    def errors(self) -> list[ImageIssue]:
        return [found for found in self.issues if found.severity == ERROR]

    @property
    def warnings(self) -> list[ImageIssue]:
        return [found for found in self.issues if found.severity == WARNING]

    def issues_for(self, path: str | Path) -> list[ImageIssue]:
        return [found for found in self.issues if found.path == Path(path)]

    def format(self) -> str:
        """A multi-line report for people: counts, then errors (skipped images), then warnings."""
        skipped = len(self.paths) - len(self.ok_paths)
        lines = [f"{len(self.paths)} images checked: {len(self.ok_paths)} usable, {skipped} skipped."]
        for title, issues in (("Errors (these images are skipped):", self.errors),
                              ("Warnings (these images are used):", self.warnings)):
            if issues:
                lines += [title, *(f"  - {found.path.name}: {found.message}" for found in issues)]
        return "\n".join(lines)


@dataclass
class PrepareResult:
    """What ``prepare_images`` wrote (one PNG per usable source, in order) and the validation behind it."""
    written: list[Path]
    report: ValidationReport


# ---------------------------------------------------------------- finding files

def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; extensions case-insensitive, hidden files ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(Message("ds_folder_missing", folder=folder))
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())


# ---------------------------------------------------------------- decoding and conversion

def open_image(path: str | Path) -> Image.Image:
    """Decode the whole file now (so truncation shows up here), without any conversion.

    Image.DecompressionBombError, before anything is decoded, when the header announces more than
    MAX_PIXELS (a small PNG can announce 13000 x 13000 16-bit pixels: gigabytes once decoded)."""
    with Image.open(path) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise Image.DecompressionBombError(f"{width}x{height} pixels is over the limit of {MAX_PIXELS}")
        image.load()
        return image


def has_alpha(image: Image.Image) -> bool:
    """Whether the image carries transparency (an alpha channel or a transparent palette/colour key)."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def uses_alpha(image: Image.Image) -> bool:
    """Whether some pixel is actually (partly) transparent."""
    return has_alpha(image) and image.convert("RGBA").getchannel("A").getextrema()[0] < 255


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited on white; CMYK, palette, grayscale and 16-bit modes converted."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        values = values / 257.0 if values.max() > 255 else values
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), "L")
    if has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def exif_orientation(image: Image.Image) -> int:
    """EXIF orientation tag (1 = upright, 2..8 = mirrored/rotated); 1 when absent or unreadable."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except (ValueError, TypeError, OSError, SyntaxError):  # malformed EXIF blocks
        return 1


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (a no-op copy when there is none)."""
    try:
        return ImageOps.exif_transpose(image)
    except (ValueError, TypeError, OSError, SyntaxError):  # malformed EXIF: keep the pixels as stored
        return image


# ---------------------------------------------------------------- resizing and cropping

def crop_box(size: tuple[int, int], resolution: int, center: tuple[float, float] | None) -> tuple[int, int, int, int]:
    """A resolution x resolution box inside ``size``, centred on ``center`` (default: the middle), clamped."""
    width, height = size
    cx, cy = center if center is not None else (width / 2, height / 2)
    left = min(max(round(cx - resolution / 2), 0), width - resolution)
    top = min(max(round(cy - resolution / 2), 0), height - resolution)
    return left, top, left + resolution, top + resolution


def resize_and_crop(image: Image.Image, resolution: int, center: tuple[float, float] | None = None) -> Image.Image:
    """Resize (LANCZOS) so the short side is ``resolution``, then crop a square around ``center`` (source px)."""
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.LANCZOS)
    scaled_center = None if center is None else (center[0] * scale, center[1] * scale)
    return resized.crop(crop_box(size, resolution, scaled_center))


@functools.cache
def face_cascade():
    """OpenCV's frontal-face Haar cascade, loaded on first use."""
    try:
        import cv2
    except ImportError as err:
        raise DatasetError("Face cropping needs OpenCV: run `pip install opencv-python-headless` "
                           "(it is in requirements.txt), or use crop='center'.") from err
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / FACE_CASCADE))
    if cascade.empty():
        raise DatasetError(f"OpenCV's {FACE_CASCADE} could not be loaded; reinstall opencv-python-headless "
                           "or use crop='center'.")
    return cascade


def detect_faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Frontal faces as (x, y, w, h) boxes in ``image``'s pixels, found by OpenCV's Haar cascade."""
    gray = image.convert("L")
    scale = min(1.0, FACE_DETECT_SIZE / max(gray.size))
    if scale < 1.0:
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                           Image.Resampling.BOX)
    boxes = face_cascade().detectMultiScale(np.asarray(gray), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [tuple(round(int(v) / scale) for v in box) for box in boxes]


def face_center(image: Image.Image) -> tuple[float, float] | None:
    """Centre of the largest detected face, or None when there is none."""
    faces = detect_faces(image)
    if not faces:
        return None
    x, y, w, h = max(faces, key=lambda box: box[2] * box[3])
    return x + w / 2, y + h / 2


def parse_crop(crop: str | Crop) -> Crop:
    try:
        return Crop(crop)
    except ValueError:
        raise DatasetError(Message("ds_unknown_crop", crop=crop, choices=", ".join(c.value for c in Crop))) from None


def read_rgb(path: str | Path) -> Image.Image:
    """The full image, turned upright (EXIF) and converted to RGB on white."""
    return to_rgb(upright(open_image(path)))


def load_image(path: str | Path, resolution: int, crop: str | Crop = Crop.CENTER) -> Image.Image:
    """A training square: decoded, turned upright (EXIF), RGB on white, short side resized, then cropped."""
    crop = parse_crop(crop)
    image = read_rgb(path)
    return resize_and_crop(image, resolution, face_center(image) if crop is Crop.FACE else None)


# ---------------------------------------------------------------- quality measures

def shrink(image: Image.Image, resolution: int) -> Image.Image:
    """``image`` shrunk (never enlarged) so its short side is at most ``resolution``."""
    scale = resolution / min(image.size)
    if scale >= 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BOX)


def blur_score(image: Image.Image) -> float:
    """Variance of the Laplacian of the grayscale image at BLUR_CHECK_SIZE px (higher = sharper)."""
    gray = np.asarray(shrink(image.convert("L"), BLUR_CHECK_SIZE), dtype=np.float64)
    if min(gray.shape) < 3:
        return 0.0
    laplacian = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1])
    return float(laplacian.var())


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9x8 grayscale thumbnail brighter than its right neighbour."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, :-1] > small[:, 1:]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def is_grayscale(raw_mode: str, image: Image.Image) -> bool:
    """True for a grayscale file mode, or an RGB ``image`` whose channels are (nearly) equal everywhere."""
    if raw_mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return True
    rgb = np.asarray(shrink(image, 64), dtype=np.int16)
    return int(np.abs(rgb - rgb[..., :1]).max()) <= 2


# ---------------------------------------------------------------- validation

# What each finding means and what to do about it, filled in with str.format; keyed by code or reason.
MESSAGES = {
    "missing": "File not found; check the path or remove it from the list.",
    "too_many_pixels": "Far too many pixels to load safely; scale it below 100 megapixels and add it again.",
    "not_an_image": "Not an image file (or a format that can't be read); remove it, or re-save it as JPEG or PNG.",
    "damaged": "The file is damaged or incomplete ({err}); copy it again from the original, or re-export it.",
    "too_small": "Only {width}x{height} pixels; training at {resolution} px needs at least {half} px on the short "
                 "side. Use a larger original.",
    "low_resolution": "{width}x{height} is below {resolution} px on the short side; it will be enlarged and may "
                      "look soft. A larger original is better.",
    "cmyk": "Stored in CMYK (print colours); it will be converted to RGB and colours may shift. Re-save it as RGB "
            "for exact colours.",
    "alpha": "Has transparent areas; they will be filled with white. Use a photo with a real background if white "
             "is not wanted.",
    "exif_rotated": "The camera stored it turned (EXIF orientation {orientation}); it will be rotated upright. "
                    "Nothing to do.",
    "grayscale": "Black and white; the model will learn a colourless subject from it. Prefer colour photos unless "
                 "that is intended.",
    "blurry": "Looks blurry or featureless (sharpness {score:.0f}, below {threshold:.0f}); blurry photos teach the "
              "model blur. Replace it with a sharp one.",
    "near_duplicate": "Looks like {how} {other}; keep one of them, duplicates make the model copy that photo.",
    "changed": "Could not be read while preparing ({err}); check the file and prepare again.",
    "no_face": "No face found, yet the class is “{class_word}”; use photos where the face is visible (or crop "
               "this one on the face), or pick another class word if the subject is not a person.",
    "same_background": "Same background as {n} of the other photos; whatever is the same in every photo is learnt "
                       "as part of the subject. Vary backgrounds, clothes and light.",
}


def issue(path: Path, severity: Severity, code: str, reason: str | None = None, **values) -> ImageIssue:
    """An ImageIssue whose message is ``MESSAGES[reason or code]`` filled in with ``values``."""
    return ImageIssue(path=path, severity=severity, code=code, message=MESSAGES[reason or code].format(**values))


def read_for_check(path: Path) -> tuple[Image.Image | None, ImageIssue | None]:
    """The decoded image, or the error that explains why it can't be used."""
    if not path.is_file():
        return None, issue(path, ERROR, "unreadable", "missing")
    try:
        return open_image(path), None
    except Image.DecompressionBombError:
        return None, issue(path, ERROR, "unreadable", "too_many_pixels")
    except Image.UnidentifiedImageError:
        return None, issue(path, ERROR, "unreadable", "not_an_image")
    except Exception as err:  # noqa: BLE001 - Pillow's decoders raise many types on corrupt data
        return None, issue(path, ERROR, "unreadable", "damaged", err=err)


def format_issues(path: Path, raw: Image.Image) -> list[ImageIssue]:
    """Warnings about how the file is stored: CMYK, transparency, EXIF rotation."""
    found = []
    if raw.mode == "CMYK":
        found.append(issue(path, WARNING, "cmyk"))
    if uses_alpha(raw):
        found.append(issue(path, WARNING, "alpha"))
    orientation = exif_orientation(raw)
    if orientation != 1:
        found.append(issue(path, WARNING, "exif_rotated", orientation=orientation))
    return found


def size_issues(path: Path, image: Image.Image, resolution: int) -> list[ImageIssue]:
    """too_small (error) below half the resolution on the short side; low_resolution (warning) below it."""
    width, height = image.size
    sizes = dict(width=width, height=height, resolution=resolution, half=resolution // 2)
    if min(width, height) < resolution / 2:
        return [issue(path, ERROR, "too_small", **sizes)]
    if min(width, height) < resolution:
        return [issue(path, WARNING, "low_resolution", **sizes)]
    return []


def content_issues(path: Path, raw: Image.Image, image: Image.Image) -> list[ImageIssue]:
    """Warnings about the picture itself: grayscale, blur."""
    found = []
    if is_grayscale(raw.mode, image):
        found.append(issue(path, WARNING, "grayscale"))
    score = blur_score(image)
    if score < BLUR_THRESHOLD:
        found.append(issue(path, WARNING, "blurry", score=score, threshold=BLUR_THRESHOLD))
    return found


def inspect_image(path: Path, resolution: int) -> tuple[list[ImageIssue], int | None]:
    """All issues of one image and its dHash (None when it can't be read or is too small)."""
    raw, error = read_for_check(path)
    if error is not None:
        return [error], None
    image = to_rgb(upright(raw))
    found = size_issues(path, image, resolution)
    if any(i.severity == ERROR for i in found):
        return found, None
    return format_issues(path, raw) + found + content_issues(path, raw, image), dhash(image)


def find_duplicates(hashes: dict[Path, int]) -> list[tuple[Path, Path, int]]:
    """Pairs (earlier, later, bits apart) whose hashes are at most DUPLICATE_MAX_DISTANCE bits apart."""
    items = list(hashes.items())
    return [(a, b, hamming(ha, hb)) for n, (a, ha) in enumerate(items) for b, hb in items[n + 1:]
            if hamming(ha, hb) <= DUPLICATE_MAX_DISTANCE]


def duplicate_issue(first: Path, second: Path, distance: int) -> ImageIssue:
    how = "the same picture as" if distance == 0 else "nearly the same picture as"
    return issue(second, WARNING, "near_duplicate", how=how, other=first.name)


def validate_images(paths: Iterable[str | Path], resolution: int) -> ValidationReport:
    """Check every image (see the module docstring); never raises on a bad image."""
    report, hashes = ValidationReport(paths=[Path(p) for p in paths]), {}
    for path in report.paths:
        found, image_hash = inspect_image(path, resolution)
        report.issues += found
        if image_hash is not None:
            report.ok_paths.append(path)
            hashes[path] = image_hash
    report.duplicates = find_duplicates(hashes)
    report.issues += [duplicate_issue(*pair) for pair in report.duplicates]
    return report


def is_person_class(class_word: str) -> bool:
    return any(word in PERSON_CLASSES for word in class_word.lower().split())


def background_ring(image: Image.Image) -> np.ndarray:
    """The outer ring of a small thumbnail, as float RGB values: what surrounds the subject."""
    small = np.asarray(image.convert("RGB").resize((BACKGROUND_SIZE,) * 2, Image.Resampling.BOX), dtype=np.float64)
    ring = np.ones((BACKGROUND_SIZE, BACKGROUND_SIZE), dtype=bool)
    ring[BACKGROUND_RING:-BACKGROUND_RING, BACKGROUND_RING:-BACKGROUND_RING] = False
    return small[ring]


def same_background_issues(images: dict[Path, Image.Image]) -> list[ImageIssue]:
    """A warning for each image whose background matches at least half of the others' (3 images or more)."""
    if len(images) < 3:
        return []
    rings = {path: background_ring(image) for path, image in images.items()}
    found = []
    for path, ring in rings.items():
        alike = sum(float(np.abs(ring - other).mean()) < SAME_BACKGROUND_DISTANCE
                    for p, other in rings.items() if p != path)
        if alike >= (len(rings) - 1) / 2:
            found.append(issue(path, WARNING, "same_background", n=alike))
    return found


def subject_issues(paths: Iterable[str | Path], class_word: str,
                   original: Callable[[Path], Path | None] | None = None) -> list[ImageIssue]:
    """Warnings about the set as a training subject: no face for a person class, the same background everywhere.

    Meant for prepared squares (what the trainer sees); unreadable files are left to validate_images. Squares too
    small for the face detector (the demo model's 64 px) are checked on their photo, `original(square)`, if given.
    """
    images = {}
    for path in map(Path, paths):
        raw, error = read_for_check(path)
        if error is None:
            images[path] = to_rgb(upright(raw))
    found = []
    if is_person_class(class_word):
        found += [issue(path, WARNING, "no_face", class_word=class_word)
                  for path, image in images.items() if not detect_faces(face_check_image(path, image, original))]
    return found + same_background_issues(images)


def face_check_image(path: Path, square: Image.Image, original: Callable[[Path], Path | None] | None) -> Image.Image:
    """The prepared square, or its original photo when the square is too small to find a face in."""
    if min(square.size) >= FACE_CHECK_MIN_SIDE or original is None:
        return square
    source = original(path)
    photo, error = read_for_check(source) if source is not None else (None, None)
    return to_rgb(upright(photo)) if photo is not None else square


# ---------------------------------------------------------------- preparing a folder

def unique_name(stem: str, taken: set[str]) -> str:
    """``stem.png``, or ``stem_1.png``, ``stem_2.png``... when taken (case-insensitively). The number goes
    before an ``@`` caption template (``a_1@S_C.png``), so it does not become a word of the caption."""
    head, at, template = stem.partition("@")
    name, n = f"{stem}.png", 0
    while name.lower() in taken:
        n += 1
        name = f"{head}_{n}{at}{template}.png"
    taken.add(name.lower())
    return name


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


def prepare_images(src_paths: Iterable[str | Path], out_dir: str | Path, resolution: int,
                   crop: str | Crop = Crop.CENTER,
                   progress: Callable[[int, int], None] | None = None) -> PrepareResult:
    """Write a square PNG per usable source into ``out_dir`` (caption ``.txt`` files copied along).

    Names keep the source stem (``a.jpg`` -> ``a.png``; ``a_1.png`` on a clash). Images with errors are
    skipped; sources are never changed or deleted (``out_dir`` may not be a source folder). Files already
    in ``out_dir`` with the same name are overwritten, so preparing again refreshes the folder.
    ``progress(done, total)`` is called after each image.
    """
    crop, out_dir, src_paths = parse_crop(crop), Path(out_dir), [Path(p) for p in src_paths]
    if any(p.resolve().parent == out_dir.resolve() for p in src_paths):
        raise DatasetError(f"The output folder {out_dir} holds source images; choose another folder so the "
                           "originals are never overwritten.")
    report = validate_images(src_paths, resolution)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, taken, usable = [], set(), list(report.ok_paths)
    for n, path in enumerate(usable):
        target = write_prepared(path, out_dir / unique_name(path.stem, taken), resolution, crop, report)
        written += [target] if target else []
        if progress:
            progress(n + 1, len(usable))
    return PrepareResult(written=written, report=report)


def write_prepared(path: Path, target: Path, resolution: int, crop: Crop, report: ValidationReport) -> Path | None:
    """Save one prepared image (and its caption); on a read failure record the error and return None."""
    try:
        image = load_image(path, resolution, crop)
    except DatasetError:
        raise
    except Exception as err:  # noqa: BLE001 - the file changed since validation; report it, don't stop
        report.issues.append(issue(path, ERROR, "unreadable", "changed", err=err))
        report.ok_paths.remove(path)
        return None
    image.save(target, format="PNG")
    caption = caption_text(path)
    if caption is not None:
        target.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
    return target


# ---------------------------------------------------------------- captions and prompt advice

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


def prompt_lint(prompt: str, token: str, class_word: str) -> str | None:
    """A warning when the prompt uses the token without the class word right after it; None otherwise."""
    if not token.strip() or not re.search(bare_token_pattern(token, class_word), prompt, re.IGNORECASE):
        return None
    return (f"Write `{token} {class_word}`, not `{token}` alone: the class word is what makes the likeness "
            "work (the number one mistake with these models).")


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


def token_advice(token: str, tokenizer) -> list[str]:
    """Plain-English notes on a subject token: its CLIP token count, common-word and overuse warnings, a tip."""
    token = token.strip()
    if not token:
        return ["Enter a token: a short, rare word that will stand for the subject (e.g. `ohwx`)."]
    count = tokenizer.token_count(token)
    notes = [f"`{token}` takes {count} CLIP token{'s' if count != 1 else ''}"
             + (" (a single token, good)." if count == 1 else "; fewer is better, 1-3 is ideal.")]
    if len(token.split()) > 1:
        notes.append("Use one word without spaces, so prompts can't split it.")
    if is_common_token(token, tokenizer):
        notes.append(f"Warning: `{token}` is probably a common word; the model already means something by it, "
                     "which will mix into the subject. Pick a rare word.")
    if token.lower() == "sks":
        notes.append("`sks` is overused (and the model knows it as a rifle); a fresher rare token works better.")
    notes.append("Tip: a rare token such as `ohwx`, or the name of a celebrity who looks like the subject, "
                 "gives training a good start.")
    return notes


# ---------------------------------------------------------------- several subjects from a folder tree

@dataclass
class FolderSubject:
    """One subject found by ``folder_subjects``: its token, class word and photos."""
    token: str
    class_word: str
    paths: list[Path]


def subfolders(folder: str | Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted ([] when it is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_subjects(root: str | Path, token: str, class_word: str) -> list[FolderSubject]:
    """The subjects of a folder tree (the old repos' convention): images at the root are ``token class``
    (the arguments); ``<t>/<c>/`` images are ``t c``; images right inside ``<t>/`` are ``t class_word``.

    ``images/photo.jpg`` -> (ohwx, person), ``images/effy/dog/a.jpg`` -> (effy, dog); ``_`` in a class
    folder's name are spaces (``rex/golden_retriever/`` -> (rex, golden retriever)). Folders without
    images are skipped; DatasetError when images need the token or class word and it is not set.
    """
    root = Path(root)
    found = [FolderSubject(token, class_word, list_images(root))]
    for first in subfolders(root):
        found.append(FolderSubject(first.name, class_word, list_images(first)))
        found += [FolderSubject(first.name, " ".join(second.name.replace("_", " ").split()), list_images(second))
                  for second in subfolders(first)]
    found = [s for s in found if s.paths]
    for s in found:
        if not s.token.strip() or not s.class_word.strip():
            where = s.paths[0].parent
            raise DatasetError(f"The images in {where} need a token and a class word: set them, or move the images "
                               "into <token>/<class>/ folders (e.g. effy/dog/).")
    return found


def class_folder(reg_root: str | Path, class_word: str, root_class_word: str) -> Path | None:
    """Where the class images of ``class_word`` are in a regularization folder: its ``<class_word>/``
    sub-folder when it holds images, else the root when it holds images and ``class_word`` is the root's
    class (``root_class_word``); None when there are none (they are generated then). The sub-folder of
    ``golden retriever`` may also be written ``golden_retriever/``."""
    reg_root = Path(reg_root)
    for named in (reg_root / class_word, reg_root / class_word.replace(" ", "_")):
        if named.is_dir() and list_images(named):
            return named
    if class_word == root_class_word and reg_root.is_dir() and list_images(reg_root):
        return reg_root
    return None


# ---------------------------------------------------------------- torch datasets

def flip_decision(seed: int, epoch: int, index: int, flip_p: float) -> bool:
    """Whether item ``index`` is mirrored in ``epoch``: a hash of (seed, epoch, index), so runs reproduce."""
    return seeded_uniform(seed, epoch, index) < flip_p


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, H, W] in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def resolve_paths(images: str | Path | Sequence[str | Path]) -> tuple[list[Path], str]:
    """A folder's images or the given list, and words naming where they came from."""
    if isinstance(images, (str, Path)):
        return list_images(images), str(images)
    return [Path(p) for p in images], "the selected files"


def empty_dataset_message(where: str, report: ValidationReport, what: str) -> Message:
    """Why a dataset has no usable image, and what to add."""
    if not report.paths:
        return Message("ds_no_images", where=where, extensions=", ".join(IMAGE_EXTENSIONS), what=what)
    by_code: dict[str, list[str]] = {}
    for err in report.errors:
        by_code.setdefault(err.code, []).append(err.path.name)
    reasons = [Message("ds_files_were" if len(names) > 1 else "ds_file_was", n=len(names),
                       problem=_problem(code), names=name_list(names)) for code, names in by_code.items()]
    return Message("ds_no_usable", where=where, reasons=reasons, what=what)


def _problem(code: str) -> Message | str:
    key = f"ds_problem_{code}"
    return Message(key) if key in CORE_MESSAGES else code.replace("_", " ")


def name_list(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


class ImageDataset(Dataset):
    """Validated images with captions, served as training squares with reproducible random flips.

    Construction validates every image (reading each file once); errored images are left out and the
    report is kept at ``.report``. Call ``set_epoch(epoch)`` each epoch before iterating (with DataLoader
    workers, use ``persistent_workers=False`` so the new epoch reaches them).
    """

    def __init__(self, paths: list[Path], captions: Callable[[Path], str], resolution: int, repeats: int,
                 flip_p: float, crop: str | Crop, seed: int, where: str, what: str):
        if repeats < 1 or not 0.0 <= flip_p <= 1.0:
            raise DatasetError(f"repeats must be >= 1 and flip_p between 0 and 1 (got {repeats}, {flip_p}).")
        self.crop, self.resolution, self.repeats = parse_crop(crop), resolution, repeats
        self.flip_p, self.seed, self.epoch = flip_p, seed, 0
        self.face_centers: dict[Path, tuple[float, float] | None] = {}  # detected once per image
        self.report = validate_images(paths, resolution)
        if not self.report.ok_paths:
            raise DatasetError(empty_dataset_message(where, self.report, what))
        self.paths = list(self.report.ok_paths)
        self.captions = [captions(path) for path in self.paths]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths) * self.repeats

    def is_flipped(self, index: int) -> bool:
        return flip_decision(self.seed, self.epoch, index, self.flip_p)

    def square(self, path: Path) -> Image.Image:
        """``load_image(path, resolution, crop)``, with the face found only the first time."""
        image = read_rgb(path)
        if self.crop is Crop.FACE and path not in self.face_centers:
            self.face_centers[path] = face_center(image)
        return resize_and_crop(image, self.resolution, self.face_centers.get(path))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        path = self.paths[index % len(self.paths)]
        image = self.square(path)
        if self.is_flipped(index):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return {"pixel_values": to_tensor(image), "caption": self.captions[index % len(self.paths)],
                "path": str(path)}


class InstanceDataset(ImageDataset):
    """The subject's photos, captioned by ``caption_for`` (``"<token> <class>"`` unless overridden)."""

    def __init__(self, images: str | Path | Sequence[str | Path], token: str, class_word: str, resolution: int,
                 repeats: int = 1, flip_p: float = 0.5, crop: str | Crop = Crop.CENTER, seed: int = 0):
        if not token.strip() or not class_word.strip():
            raise DatasetError(Message("ds_token_class_unset"))
        paths, where = resolve_paths(images)
        super().__init__(paths, lambda p: caption_for(p, token, class_word), resolution, repeats, flip_p, crop,
                         seed, where, Message("ds_what_photos", low=MIN_PHOTOS, high=MAX_PHOTOS, side=resolution // 2))


class ClassDataset(ImageDataset):
    """Regularization images of the bare class, captioned by ``class_caption_for``."""

    def __init__(self, images: str | Path | Sequence[str | Path], class_word: str, resolution: int,
                 flip_p: float = 0.5, crop: str | Crop = Crop.CENTER, seed: int = 0, repeats: int = 1):
        if not class_word.strip():
            raise DatasetError(Message("ds_class_unset"))
        paths, where = resolve_paths(images)
        super().__init__(paths, lambda p: class_caption_for(p, class_word), resolution, repeats, flip_p, crop,
                         seed, where, Message("ds_what_class", class_word=class_word))
