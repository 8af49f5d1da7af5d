"""A labelled comparison grid: one column per checkpoint, one row per prompt, names written on it.

    grid = labelled_grid([[img_a1, img_b1], [img_a2, img_b2]], rows=["prompt 1", "prompt 2"], cols=["a", "b"])
"""
import textwrap

from PIL import Image, ImageDraw, ImageFont

MARGIN = 8
GAP = 4  # white between cells
MIN_CELL = 192  # smaller images (the demo model's 64 px) are enlarged so that their labels fit


def font(cell: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(11, min(22, cell // 14)))


def wrapped(text: str, width_px: int, face: ImageFont.ImageFont, max_lines: int) -> list[str]:
    """Lines of `text` that fit `width_px`, at most `max_lines` (the last one ends with … when cut)."""
    chars = max(8, int(width_px / max(1.0, face.getlength("n"))))
    lines = textwrap.wrap(text, chars) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, chars - 1)] + "…"
    return lines


def enlarged(image: Image.Image) -> Image.Image:
    factor = -(-MIN_CELL // image.width)
    return image if factor <= 1 else image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def labelled_grid(images: list[list[Image.Image]], rows: list[str], cols: list[str]) -> Image.Image:
    """Paste images[r][c] into a grid with column titles on top and row titles on the left."""
    images = [[enlarged(image) for image in row] for row in images]
    cell_w, cell_h = images[0][0].size
    face = font(max(cell_w, 128))
    line_h = int(face.size * 1.3)
    head_h = line_h * 2 + 2 * MARGIN
    side_w = max(160, cell_w // 2)
    step_w, step_h = cell_w + GAP, cell_h + GAP
    grid = Image.new("RGB", (side_w + len(cols) * step_w, head_h + len(rows) * step_h), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(cols):
        for n, line in enumerate(wrapped(title, cell_w - 2 * MARGIN, face, 2)):
            draw.text((side_w + c * step_w + MARGIN, MARGIN + n * line_h), line, fill="black", font=face)
    max_lines = max(1, (cell_h - 2 * MARGIN) // line_h)
    for r, title in enumerate(rows):
        for n, line in enumerate(wrapped(title, side_w - 2 * MARGIN, face, max_lines)):
            draw.text((MARGIN, head_h + r * step_h + MARGIN + n * line_h), line, fill="black", font=face)
        for c, image in enumerate(images[r]):
            grid.paste(image, (side_w + c * step_w, head_h + r * step_h))
    return grid
