"""A subject's training images: its checked photos (or class images) with their captions, and prepared copies.

    photos = instance_set("photos/", "joepenna", "person", 512)    # DatasetError when none is usable
    photos.paths, photos.captions, photos.report                    # usable images, their captions, the checks
    photos.square(0)                                                # the first as the trainer encodes it
    result = prepare_images(report.ok_paths, "outputs/prepared", 512)  # PNGs for the trainer; sources untouched

Files and squares are sdtrainer.images', checks sdtrainer.checks', captions sdtrainer.captions'. Training
mirrors the cached latents itself (sdtrainer.trainer draws the flips), so nothing here flips.
"""
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sdtrainer.captions import caption_for, caption_text, class_caption_for
from sdtrainer.checks import ERROR, MAX_PHOTOS, MIN_PHOTOS, ValidationReport, issue, validate_images
from sdtrainer.images import IMAGE_EXTENSIONS, Crop, DatasetError, list_images, load_image, parse_crop
from sdtrainer.messages import MESSAGES, Message


@dataclass
class ImageSet:
    """Validated images with their captions, in order; errored images are left out (see ``report``)."""
    paths: list[Path]
    captions: list[str]
    report: ValidationReport
    resolution: int
    crop: Crop

    def square(self, n: int) -> Image.Image:
        """Image n as a training square (``load_image``)."""
        return load_image(self.paths[n], self.resolution, self.crop)


def instance_set(images: str | Path | Sequence[str | Path], token: str, class_word: str, resolution: int,
                 crop: str | Crop = Crop.CENTER) -> ImageSet:
    """The subject's photos, captioned by ``caption_for`` (``"<token> <class>"`` unless overridden)."""
    if not token.strip() or not class_word.strip():
        raise DatasetError(Message("ds_token_class_unset"))
    return image_set(images, lambda p: caption_for(p, token, class_word), resolution, crop,
                     Message("ds_what_photos", low=MIN_PHOTOS, high=MAX_PHOTOS, side=resolution // 2))


def class_set(images: str | Path | Sequence[str | Path], class_word: str, resolution: int,
              crop: str | Crop = Crop.CENTER) -> ImageSet:
    """Regularization images of the bare class, captioned by ``class_caption_for``."""
    if not class_word.strip():
        raise DatasetError(Message("ds_class_unset"))
    return image_set(images, lambda p: class_caption_for(p, class_word), resolution, crop,
                     Message("ds_what_class", class_word=class_word))


def image_set(images: str | Path | Sequence[str | Path], captions: Callable[[Path], str], resolution: int,
              crop: str | Crop, what: str) -> ImageSet:
    """Validate every image (reading each file once) and caption the usable ones; DatasetError when none is."""
    paths, where = resolve_paths(images)
    crop = parse_crop(crop)
    report = validate_images(paths, resolution)
    if not report.ok_paths:
        raise DatasetError(empty_dataset_message(where, report, what))
    usable = list(report.ok_paths)
    return ImageSet(usable, [captions(path) for path in usable], report, resolution, crop)


@dataclass
class PrepareResult:
    """What ``prepare_images`` wrote (one PNG per usable source, in order) and the validation behind it."""
    written: list[Path]
    report: ValidationReport


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
        raise DatasetError(Message("ds_output_holds_sources", folder=out_dir))
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


def resolve_paths(images: str | Path | Sequence[str | Path]) -> tuple[list[Path], str | Message]:
    """A folder's images or the given list, and words naming where they came from."""
    if isinstance(images, (str, Path)):
        return list_images(images), str(images)
    return [Path(p) for p in images], Message("ds_selected_files")


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
    return Message(key) if key in MESSAGES else code.replace("_", " ")


def name_list(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
