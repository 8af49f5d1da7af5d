"""Image files as training squares: find them, decode them whole, turn them upright (EXIF), make them RGB on
white, and crop them square, in the middle or on the largest face.

    paths = list_images("photos/")                     # image files directly inside, sorted
    image = load_image(paths[0], 512, crop="face")     # RGB, upright, 512 x 512
    pixels = to_tensor(image)                          # [3, 512, 512] in [-1, 1], what the VAE encodes

Face detection uses OpenCV's Haar cascade (``opencv-python-headless``), imported on first use.
"""
import functools
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from sdtrainer.messages import Message

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Larger images are refused from their header, before decoding (a photo from a 100 MP camera still fits).
MAX_PIXELS = 100_000_000
FACE_CASCADE = "haarcascade_frontalface_default.xml"
FACE_DETECT_SIZE = 640  # images are shrunk to this long side before face detection (speed)


class DatasetError(ValueError):
    """A problem with the user's images or settings; the message says what to do."""


class Crop(str, Enum):
    """How a non-square image becomes square."""
    CENTER = "center"  # the middle of the image
    FACE = "face"      # centred on the largest detected face; the middle when none is found


# ---------------------------------------------------------------- finding files

def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; extensions case-insensitive, hidden files ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(Message("ds_folder_missing", folder=folder))
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())


def subfolders(folder: str | Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted ([] when it is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


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


def read_rgb(path: str | Path) -> Image.Image:
    """The full image, turned upright (EXIF) and converted to RGB on white."""
    return to_rgb(upright(open_image(path)))


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
        raise DatasetError(Message("ds_no_opencv")) from err
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / FACE_CASCADE))
    if cascade.empty():
        raise DatasetError(Message("ds_no_cascade", file=FACE_CASCADE))
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


def load_image(path: str | Path, resolution: int, crop: str | Crop = Crop.CENTER) -> Image.Image:
    """A training square: decoded, turned upright (EXIF), RGB on white, short side resized, then cropped."""
    crop = parse_crop(crop)
    image = read_rgb(path)
    return resize_and_crop(image, resolution, face_center(image) if crop is Crop.FACE else None)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, H, W] in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
