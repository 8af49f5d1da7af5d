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

from sdtrainer.dataset import IMAGE_EXTENSIONS, list_images
from sdtrainer.ui.i18n import UIError

PROJECT_FILE = "project.json"
NAME_PATTERN = re.compile(r"^\w[\w .-]{0,63}$")
MIN_RESOLUTION, MAX_RESOLUTION, RESOLUTION_STEP = 64, 1024, 64


@dataclass
class Project:
    root: Path
    token: str = ""
    class_word: str = "person"
    resolution: int = 512
    crop: str = "center"
    # prepared image name -> its warnings as (code, English message) pairs, from the last prepare
    warnings: dict[str, list[list[str]]] = field(default_factory=dict)

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
        for file in [path, path.with_suffix(".txt"), *self._sources_of(path.stem)]:
            file.unlink(missing_ok=True)
        self.warnings.pop(path.name, None)
        self.save()

    def set_caption(self, name: str, caption: str) -> Path:
        """Write (or, when empty, delete) the caption .txt beside the prepared image and its source photo,
        so preparing again keeps it. Returns the prepared image's path."""
        path = self.prepared_dir / Path(name).name
        if not path.is_file():
            raise UIError("err_image_gone", name=name)
        sources = [p for p in self._sources_of(path.stem) if p.suffix.lower() != ".txt"]
        for txt in [path.with_suffix(".txt")] + [p.with_suffix(".txt") for p in sources]:
            if caption:
                txt.write_text(caption + "\n", encoding="utf-8")
            else:
                txt.unlink(missing_ok=True)
        return path

    def _sources_of(self, stem: str) -> list[Path]:
        base = re.sub(r"_\d+$", "", stem)  # prepare_images names clashes stem_1, stem_2...
        return [p for p in self.instance_dir.iterdir() if p.stem in (stem, base)
                and p.suffix.lower() in IMAGE_EXTENSIONS + (".txt",)]


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


def free_path(folder: Path, stem: str, suffix: str) -> Path:
    """folder/stem.suffix, or folder/stem-2.suffix... when a file of that stem exists."""
    candidate, n = folder / f"{stem}{suffix}", 1
    while any(folder.glob(f"{glob_escape(candidate.stem)}.*")):
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
