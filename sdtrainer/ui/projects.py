"""A project: the photos of one subject, its token and class word, under outputs/projects/<name>/.

    project = Project.create(projects_dir, "joe")   # instance/ (photos as dropped), prepared/ (squares
    project.token = "ohwx"; project.save()          # the trainer reads), reg/ (class images), project.json
    project = Project.open(projects_dir / "joe")

Problems the user can fix raise UIError with a translation key (see sdtrainer/ui/i18n.py).
"""
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sdtrainer.dataset import (IMAGE_EXTENSIONS, PrepareResult, face_center, list_images, prepare_images, read_rgb,
                               resize_and_crop)
from sdtrainer.ui.i18n import UIError

PROJECT_FILE = "project.json"
NAME_PATTERN = re.compile(r"^\w[\w .-]{0,63}$")
MIN_RESOLUTION, MAX_RESOLUTION, RESOLUTION_STEP = 64, 1024, 64
# How one image can be cropped again: the middle, on the face, or against the top/left or bottom/right edge.
RECROPS = ("center", "face", "start", "end")


@dataclass
class Project:
    root: Path
    token: str = ""
    class_word: str = "person"
    resolution: int = 512
    crop: str = "center"
    # prepared image name -> its warnings as (code, English message) pairs, from the last prepare
    warnings: dict[str, list[list[str]]] = field(default_factory=dict)
    # prepared image name -> how it was cropped again by hand (one of RECROPS); kept when preparing again
    crops: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def instance_dir(self) -> Path:
        return self.root / "instance"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "prepared"

    @property
    def reg_dir(self) -> Path:
        return self.root / "reg"

    @classmethod
    def create(cls, projects_dir: Path, name: str) -> "Project":
        name = (name or "").strip()
        if not NAME_PATTERN.match(name):
            raise UIError("err_project_name", name=name)
        if (projects_dir / name).exists():
            raise UIError("err_project_exists", name=name)
        project = cls(projects_dir / name)
        for folder in (project.instance_dir, project.prepared_dir, project.reg_dir):
            folder.mkdir(parents=True)
        project.save()
        return project

    @classmethod
    def open(cls, root: Path) -> "Project":
        file = root / PROJECT_FILE
        if not file.is_file():
            raise UIError("err_project_missing", name=root.name)
        data = json.loads(file.read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "root"}
        project = cls(root, **known)
        for folder in (project.instance_dir, project.prepared_dir, project.reg_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return project

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "root"}
        (self.root / PROJECT_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")

    def set_subject(self, token: str, class_word: str, resolution: int) -> None:
        """Check and store the token, class word and training resolution (not saved yet)."""
        token, class_word = (token or "").strip(), " ".join((class_word or "").split())
        if not token:
            raise UIError("err_token_empty")
        if len(token.split()) > 1:
            raise UIError("err_token_space")
        if not class_word:
            raise UIError("err_class_empty")
        if resolution is None or resolution % RESOLUTION_STEP or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise UIError("err_resolution", value=resolution, low=MIN_RESOLUTION, high=MAX_RESOLUTION)
        self.token, self.class_word, self.resolution = token, class_word, int(resolution)

    def photos(self) -> list[Path]:
        return list_images(self.instance_dir)

    def prepared(self) -> list[Path]:
        return list_images(self.prepared_dir)

    def class_images(self) -> list[Path]:
        return list_images(self.reg_dir)

    def remove_prepared(self, name: str) -> None:
        """Delete a prepared image, its caption, warnings and its source photo (so it stays out)."""
        path = self.prepared_dir / Path(name).name
        if not path.is_file():
            raise UIError("err_image_gone", name=name)
        for file in [path, path.with_suffix(".txt"), *self._source_files(path.stem)]:
            file.unlink(missing_ok=True)
        self.warnings.pop(path.name, None)
        self.crops.pop(path.name, None)
        self.save()

    def recrop(self, name: str, where: str) -> bool:
        """Crop one prepared image again from its source photo (see RECROPS) and remember it (not saved yet).

        Returns False when a face crop found no face (the middle is used then)."""
        if where not in RECROPS:
            raise UIError("err_recrop", where=where)
        path = self.prepared_dir / Path(name).name
        if not path.is_file():
            raise UIError("err_image_gone", name=name)
        image = read_rgb(self.source_of(path.stem))
        face = face_center(image) if where == "face" else None
        center = {"center": None, "face": face, "start": (0, 0), "end": image.size}[where]
        resize_and_crop(image, self.resolution, center).save(path, format="PNG")
        self.crops[path.name] = where
        return where != "face" or face is not None

    def source_of(self, stem: str) -> Path:
        """The photo a prepared image came from: the first of that stem, or for `a_2` the third photo of stem `a`
        (prepare_images numbers clashing names in the photos' order)."""
        base, number = re.fullmatch(r"(.*?)(?:_(\d+))?", stem).groups()
        exact = [p for p in self.photos() if p.stem == stem]
        same_base = [p for p in self.photos() if p.stem == base]
        n = int(number or 0)
        if exact:
            return exact[0]
        if n < len(same_base):
            return same_base[n]
        raise UIError("err_source_gone", name=f"{stem}.png")

    def set_caption(self, name: str, caption: str) -> Path:
        """Write (or, when empty, delete) the caption .txt beside the prepared image and its source photo,
        so preparing again keeps it. Returns the prepared image's path."""
        path = self.prepared_dir / Path(name).name
        if not path.is_file():
            raise UIError("err_image_gone", name=name)
        for txt in [path.with_suffix(".txt"), *self._source_files(path.stem)[1:]]:
            if caption:
                txt.write_text(caption + "\n", encoding="utf-8")
            else:
                txt.unlink(missing_ok=True)
        return path

    def _source_files(self, stem: str) -> list[Path]:
        """The source photo of a prepared image and its caption, [] when the photo is gone."""
        try:
            source = self.source_of(stem)
        except UIError:
            return []
        return [source, source.with_suffix(".txt")]


def list_projects(projects_dir: Path) -> list[str]:
    if not projects_dir.is_dir():
        return []
    return sorted(p.name for p in projects_dir.iterdir() if (p / PROJECT_FILE).is_file())


def import_files(files: list[str], folder: Path) -> tuple[list[Path], list[str]]:
    """Copy uploaded images (and .txt captions named like them) into `folder`, names kept where free.

    Returns (copied images, names skipped because they are neither). Content is checked later by
    validate_images, which reports unreadable files instead of failing.
    """
    copied, skipped = [], []
    for file in sorted(files, key=lambda f: Path(f).suffix.lower() == ".txt"):  # images first
        src = Path(file)
        suffix = src.suffix.lower()
        if suffix == ".txt":
            shutil.copyfile(src, folder / src.name)
        elif suffix in IMAGE_EXTENSIONS:
            copied.append(free_path(folder, src.stem, suffix))
            shutil.copyfile(src, copied[-1])
        else:
            skipped.append(src.name)
    return copied, skipped


def import_class_images(project: Project, images: list[Path]) -> PrepareResult:
    """Square the images into the project's reg/ folder under names not taken yet (generated class images and
    earlier imports are never overwritten); their .txt captions come along."""
    staging = project.reg_dir / ".import"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = prepare_images(images, staging, project.resolution, "center")
        moved = []
        for path in result.written:
            moved.append(free_path(project.reg_dir, path.stem, ".png"))
            path.replace(moved[-1])
            if path.with_suffix(".txt").is_file():
                path.with_suffix(".txt").replace(moved[-1].with_suffix(".txt"))
        result.written = moved
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def free_path(folder: Path, stem: str, suffix: str) -> Path:
    """folder/stem.suffix, or folder/stem-2.suffix... when a file of that stem exists."""
    candidate, n = folder / f"{stem}{suffix}", 1
    while any(folder.glob(f"{glob_escape(candidate.stem)}.*")):
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
