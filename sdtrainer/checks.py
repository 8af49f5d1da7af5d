"""Quality checks on training images: what makes a photo unusable, or worth a warning, and why.

    report = validate_images(list_images("photos/"), resolution=512)   # never raises on a bad image
    print(report.format())                                              # errors are skipped, warnings kept
    subject_issues(prepared, "person")                                  # warnings about the set as a subject

``validate_images``: unreadable, truncated or non-image files and images smaller than half the training
resolution are errors; CMYK, transparency, EXIF rotation, grayscale, low resolution, blur and near-duplicates
are warnings. ``subject_issues(prepared, class_word)`` adds warnings about the set as a subject: no face for a
person class, the same background in most photos.
"""
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from sdtrainer.images import detect_faces, exif_orientation, open_image, to_rgb, upright, uses_alpha
from sdtrainer.messages import Message

ERROR = "error"
WARNING = "warning"
Severity = Literal["error", "warning"]

# Sharpness = variance of the 4-neighbour Laplacian of the grayscale image, its short side brought down
# to BLUR_CHECK_SIZE px (0..255 values). Sharp photos score in the hundreds to thousands; out-of-focus or
# motion-blurred ones, and nearly featureless ones, score below 100 (the usual OpenCV rule of thumb).
BLUR_CHECK_SIZE = 256
BLUR_THRESHOLD = 100.0
# Near-duplicates: 64-bit difference hashes (dHash) at most this many bits apart.
DUPLICATE_MAX_DISTANCE = 5
MIN_PHOTOS, MAX_PHOTOS = 5, 20  # the advised number of photos of a subject
# Prepared squares smaller than this are checked for a face on their photo: OpenCV's detector needs ~100 px faces
# to be reliable, and the demo model's 64 px squares hold far fewer.
FACE_CHECK_MIN_SIDE = 128
# Class words whose photos should show a face (subject_issues warns when OpenCV finds none).
PERSON_CLASSES = frozenset("person man woman boy girl child kid baby lady guy men women people teenager".split())
# Same background: the outer ring (BACKGROUND_RING px wide) of a BACKGROUND_SIZE px thumbnail of each square,
# compared as mean absolute difference (0..255); an image whose ring is within SAME_BACKGROUND_DISTANCE of at
# least half of the others' is flagged.
BACKGROUND_SIZE, BACKGROUND_RING, SAME_BACKGROUND_DISTANCE = 16, 3, 10.0


@dataclass
class ImageIssue:
    """One finding about one image; ``message`` says what to do (a Message: English, and French by its key)."""
    path: Path
    severity: Severity  # "error": the image is skipped; "warning": it is used as is (or fixed on load)
    code: str  # unreadable, too_small, low_resolution, cmyk, alpha, exif_rotated, grayscale, blurry, near_duplicate,
    #            and from subject_issues: no_face, same_background
    message: Message


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

    def counts(self) -> Message:
        """How many images were checked, usable and skipped (the first line of a report)."""
        return Message("check_counts", total=len(self.paths), ok=len(self.ok_paths),
                       skipped=len(self.paths) - len(self.ok_paths))

    def lines(self) -> list[Message]:
        """The report for the log, a line each: counts, then errors (skipped images), then warnings."""
        lines = [self.counts()]
        for title, issues in (("check_report_errors", self.errors), ("check_report_warnings", self.warnings)):
            if issues:
                lines += [Message(title), *(Message("check_report_issue", name=found.path.name, issue=found.message)
                                            for found in issues)]
        return lines

    def format(self) -> str:
        """The report as one English text."""
        return "\n".join(self.lines())


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

def issue(path: Path, severity: Severity, code: str, reason: str | None = None, **values) -> ImageIssue:
    """An ImageIssue whose message is the catalogue's ``check_<reason or code>`` filled in with ``values``."""
    return ImageIssue(path=path, severity=severity, code=code, message=Message(f"check_{reason or code}", **values))


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
    how = Message("check_same_picture" if distance == 0 else "check_nearly_same_picture")
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


# ---------------------------------------------------------------- the set as a subject

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
