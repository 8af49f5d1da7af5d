"""A project: the photos of one or more subjects, their tokens and class words, under outputs/projects/<name>/.

    project = Project.create(projects_dir, "joe")   # one subject, no words yet; its photos in instance/ and
    project.set_words(project.subject(), "ohwx", "person")   # prepared/ (the squares the trainer reads),
    project.save()                                  # class images in reg/, project.json
    project = Project.open(projects_dir / "joe")
    effy = project.add_subject("effy", "dog")       # subjects/effy/{instance,prepared}/, class images in reg/dog/
    project.save()
    for subject in project.subjects:                # Subject: photos(), prepared(), class_images(), caption()
        print(subject.label, len(subject.prepared()))

project.json lists every subject (FORMAT 2): its words, its folder, its prepared images' warnings and
hand-made crops. The first subject's words are the run's `token` and `class_word` (the Training tab's
config), so it cannot be removed, and reg/ itself holds the class images of its class word; class images
of another class word go to reg/<class_word>/, the layout the trainer reads (concepts.class_folder). A
subject's folder is the project's own (instance/ and prepared/ beside project.json) for the subject a
project is created with, subjects/<token>/ for one added later. A project.json from before FORMAT 2 kept
the first subject at its top level: `migrated` reads it and the next save writes it anew; no file moves.

Problems the user can fix raise UIError with a translation key (see sdtrainer/ui/i18n.py).
"""
import json
import re
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from sdtrainer.captions import caption_and_source, caption_for
from sdtrainer.concepts import class_folder
from sdtrainer.dataset import PrepareResult, prepare_images
from sdtrainer.images import IMAGE_EXTENSIONS, face_center, list_images, read_rgb, resize_and_crop
from sdtrainer.ui.i18n import UIError

PROJECT_FILE = "project.json"
FORMAT = 2  # project.json's layout: every subject in `subjects` (before: no `format`, see migrated)
NAME_PATTERN = re.compile(r"^\w[\w .-]{0,63}$")
FOLDER_WORD = re.compile(r"^\w[\w '-]{0,63}$")  # an added subject's token, any class word: they name folders
# The errors a subject's words can raise here (the Dataset tab shows them under the token and class word fields)
TOKEN_ERRORS = ("err_token_empty", "err_token_space", "err_token_used", "err_token_chars")
CLASS_ERRORS = ("err_class_empty", "err_class_chars")
MIN_RESOLUTION, MAX_RESOLUTION, RESOLUTION_STEP = 64, 1024, 64
# How one image can be cropped again: the middle, on the face, or against the top/left or bottom/right edge.
RECROPS = ("center", "face", "start", "end")


@dataclass
class Project:
    root: Path
    resolution: int = 512
    crop: str = "center"
    subjects: list["Subject"] = field(default_factory=list)  # every subject, trained together in one run

    @property
    def name(self) -> str:
        return self.root.name

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
        first = Subject(project, token="", class_word="person", folder="")  # the project's own folders
        project.subjects.append(first)
        for folder in (first.instance_dir, first.prepared_dir, project.reg_dir):
            folder.mkdir(parents=True)
        project.save()
        return project

    @classmethod
    def open(cls, root: Path) -> "Project":
        file = root / PROJECT_FILE
        if not file.is_file():
            raise UIError("err_project_missing", name=root.name)
        try:
            data = migrated(json.loads(file.read_text(encoding="utf-8")))
            project = cls(root, **{k: data[k] for k in ("resolution", "crop") if k in data})
            saved = Subject.saved_fields()
            project.subjects = [Subject(project, **{k: v for k, v in s.items() if k in saved})
                                for s in data["subjects"]]
        except (ValueError, AttributeError, TypeError, KeyError):
            raise UIError("err_project_damaged", name=root.name) from None
        project.check_subjects()
        for subject in project.subjects:
            for folder in (subject.instance_dir, subject.prepared_dir):
                folder.mkdir(parents=True, exist_ok=True)
        project.reg_dir.mkdir(exist_ok=True)
        return project

    def check_subjects(self) -> None:
        """The subjects as a hand-edited or crafted project.json may hold them: UIError unless there is one at least
        and every word and folder is as the app writes them (so no folder is ever made outside the project)."""
        for subject in self.subjects:
            words = (subject.token, subject.class_word, subject.folder)
            if not all(isinstance(w, str) for w in words) or not subject.has_valid_folder():
                raise UIError("err_project_damaged", name=self.name)
            if subject.class_word and not FOLDER_WORD.match(subject.class_word):  # "" names no folder
                raise UIError("err_project_damaged", name=self.name)
        if not self.subjects:
            raise UIError("err_project_damaged", name=self.name)

    def save(self) -> None:
        data = {"format": FORMAT, "resolution": self.resolution, "crop": self.crop,
                "subjects": [s.saved() for s in self.subjects]}
        (self.root / PROJECT_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")

    def set_resolution(self, resolution: int) -> None:
        """Check and store the training resolution of every subject (not saved yet)."""
        if resolution is None or resolution % RESOLUTION_STEP or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise UIError("err_resolution", value=resolution, low=MIN_RESOLUTION, high=MAX_RESOLUTION)
        self.resolution = int(resolution)

    # ------------------------------------------------------------------ subjects
    def subject(self, token: str | None = None) -> "Subject":
        """The subject of that token; the first one for None or ''."""
        if not token:
            return self.subjects[0]
        for s in self.subjects:
            if s.token == token:
                return s
        raise UIError("err_subject_missing", token=token)

    def add_subject(self, token: str, class_word: str) -> "Subject":
        """A new subject with its own photos under subjects/<token>/ (not saved yet)."""
        if not all(s.token for s in self.subjects):
            raise UIError("err_save_settings_first")
        token, class_word = self.checked_words(token, class_word, None)
        check_folder_word(token, "err_token_chars")
        added = Subject(self, token, class_word, folder=added_folder(token))
        self.subjects.append(added)
        for folder in (added.instance_dir, added.prepared_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return added

    def remove_subject(self, token: str) -> Path:
        """Take a subject but the first out of the project (not saved yet). Its folder (photos, prepared squares,
        captions) is moved to removed/<token>-<time>/, returned, so a wrong click loses nothing; its class
        images stay where they are (another subject may share them)."""
        subject = self.subject(token)
        if subject is self.subjects[0]:
            raise UIError("err_remove_first_subject")
        stem, n = f"{subject.token}-{time.strftime('%Y%m%d-%H%M%S')}", 0
        kept = self.root / "removed" / stem
        while kept.exists():  # removed twice within a second
            n += 1
            kept = kept.with_name(f"{stem}-{n}")
        kept.parent.mkdir(exist_ok=True)
        if subject.root.exists():
            subject.root.rename(kept)
        self.subjects.remove(subject)
        return kept

    def set_words(self, subject: "Subject", token: str, class_word: str) -> None:
        """Change a subject's token and class word; a folder under subjects/ follows the token (not saved yet)."""
        token, class_word = self.checked_words(token, class_word, subject)
        if subject.folder == added_folder(subject.token) and token != subject.token:
            check_folder_word(token, "err_token_chars")
            subject.root.rename(self.root / added_folder(token))
            subject.folder = added_folder(token)
        subject.token, subject.class_word = token, class_word

    def checked_words(self, token: str, class_word: str, subject: "Subject | None") -> tuple[str, str]:
        """The token and class word, tidied; UIError when one is empty, the token is not one word or is
        another subject's already, or the class word cannot name a folder."""
        token, class_word = (token or "").strip(), " ".join((class_word or "").split())
        if not token:
            raise UIError("err_token_empty")
        if len(token.split()) > 1:
            raise UIError("err_token_space")
        if not class_word:
            raise UIError("err_class_empty")
        check_folder_word(class_word, "err_class_chars")
        others = [s.token.lower() for s in self.subjects if s.token and s is not subject]
        if token.lower() in others:
            raise UIError("err_token_used", token=token)
        return token, class_word

    def class_dir(self, class_word: str) -> Path:
        """Where the class images of `class_word` are (concepts.class_folder's layout, what training reads):
        reg/ for the first subject's class word (reg/<class_word>/ once that holds images), reg/<class_word>/
        for any other."""
        run_class = self.subjects[0].class_word
        found = class_folder(self.reg_dir, class_word, run_class)
        return found or (self.reg_dir if class_word == run_class else self.reg_dir / class_word)


def migrated(data: dict) -> dict:
    """project.json's data in FORMAT: a file from before kept the first subject's words, warnings and crops at
    its top level (its photos in the project's own instance/ and prepared/) and the others in `subjects`
    (their photos in subjects/<token>/)."""
    if data.get("format") == FORMAT:
        return data
    first = {"token": data.get("token", ""), "class_word": data.get("class_word", "person"), "folder": "",
             "warnings": data.get("warnings", {}), "crops": data.get("crops", {})}
    added = [{**s, "folder": added_folder(s["token"])} for s in data.get("subjects") or []]
    kept = {k: data[k] for k in ("resolution", "crop") if k in data}
    return {"format": FORMAT, **kept, "subjects": [first, *added]}


def added_folder(token: str) -> str:
    """The folder of a subject added to a project, relative to its root (its token names it)."""
    return f"subjects/{token}"


def check_folder_word(word: str, key: str) -> None:
    """UIError `key` when `word` cannot be a folder name on every system."""
    if not FOLDER_WORD.match(word):
        raise UIError(key, word=word)


@dataclass
class Subject:
    """One subject of a project: its words and its prepared images' warnings and hand-made crops, saved in
    project.json by project.save(); its files under `folder`: photos as dropped (instance/), the squares the
    trainer reads (prepared/, with captions); its class images (Project.class_dir). The Training tab makes a
    run's config of them, whose subjects the trainer reads as concepts.Subject (see sdtrainer/concepts.py)."""
    project: Project = field(repr=False, compare=False)
    token: str
    class_word: str
    folder: str  # holds instance/ and prepared/, relative to the project's root: "" or added_folder(token)
    # prepared image name -> its warnings as (code, English message) pairs, from the last prepare
    warnings: dict[str, list[list[str]]] = field(default_factory=dict)
    # prepared image name -> how it was cropped again by hand (one of RECROPS); kept when preparing again
    crops: dict[str, str] = field(default_factory=dict)

    @classmethod
    def saved_fields(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "project"]

    def saved(self) -> dict:
        """What project.json holds of it."""
        return {name: getattr(self, name) for name in self.saved_fields()}

    def has_valid_folder(self) -> bool:
        """Whether its folder is one the app makes: the project's own or its token's under subjects/."""
        return self.folder == "" or (self.folder == added_folder(self.token) and bool(FOLDER_WORD.match(self.token)))

    @property
    def root(self) -> Path:
        return self.project.root / self.folder

    @property
    def instance_dir(self) -> Path:
        return self.root / "instance"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "prepared"

    @property
    def class_dir(self) -> Path:
        return self.project.class_dir(self.class_word)

    @property
    def label(self) -> str:
        return f"{self.token} {self.class_word}".strip()

    def photos(self) -> list[Path]:
        return list_images(self.instance_dir)

    def prepared(self) -> list[Path]:
        return list_images(self.prepared_dir)

    def class_images(self) -> list[Path]:
        folder = self.class_dir
        return list_images(folder) if folder.is_dir() else []

    def caption(self, path: Path) -> str:
        """The caption training gives this prepared image (captions.caption_for)."""
        return caption_for(path, self.token, self.class_word)

    def caption_source(self, path: Path) -> str:
        """Which of caption_for's rules gives the caption: txt, template (`@` in the name), file_name or default."""
        return caption_and_source(path, self.token, self.class_word)[1]

    def remove_prepared(self, name: str) -> None:
        """Delete a prepared image, its caption, warnings and its source photo (so it stays out)."""
        path = self.prepared_dir / Path(name).name
        if not path.is_file():
            raise UIError("err_image_gone", name=name)
        for file in [path, path.with_suffix(".txt"), *self._source_files(path.stem)]:
            file.unlink(missing_ok=True)
        self.warnings.pop(path.name, None)
        self.crops.pop(path.name, None)
        self.project.save()

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
        resize_and_crop(image, self.project.resolution, center).save(path, format="PNG")
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

    def photo_of(self, prepared: Path) -> Path | None:
        """The source photo of a prepared image, None when it is gone."""
        try:
            return self.source_of(prepared.stem)
        except UIError:
            return None

    def set_caption(self, name: str, caption: str) -> Path:
        """Write (or, when empty, delete) the caption .txt beside the prepared image and its source photo,
        so preparing again keeps it. Returns the prepared image's path."""
        path = self.prepared_dir / Path(name).name
        if not path.is_file():
            raise UIError("err_image_gone", name=name)
        try:
            data = (caption + "\n").encode("utf-8")  # before any file is opened: a bad text must not empty one
        except UnicodeEncodeError:
            raise UIError("err_caption_chars") from None
        for txt in [path.with_suffix(".txt"), *self._source_files(path.stem)[1:]]:
            if caption:
                txt.write_bytes(data)
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


def import_files(files: list[str], folder: Path) -> tuple[list[Path], list[str], list[str]]:
    """Copy uploaded images (and .txt captions named like them) into `folder`, names kept where free.

    Returns (copied images, names skipped because they are neither, captions that belong to no photo of `folder`:
    kept, but said, since a .txt alone is not a photo). Content is checked later by validate_images, which reports
    unreadable files instead of failing.
    """
    copied, skipped, captions = [], [], []
    for file in sorted(files, key=lambda f: Path(f).suffix.lower() == ".txt"):  # images first
        src = Path(file)
        suffix = src.suffix.lower()
        if suffix == ".txt":
            shutil.copyfile(src, folder / src.name)
            captions.append(src.name)
        elif suffix in IMAGE_EXTENSIONS:
            copied.append(free_path(folder, src.stem, suffix))
            shutil.copyfile(src, copied[-1])
        else:
            skipped.append(src.name)
    stems = {p.stem for p in list_images(folder)}
    return copied, skipped, [name for name in captions if Path(name).stem not in stems]


def import_class_images(folder: Path, resolution: int, images: list[Path]) -> PrepareResult:
    """Square the images into a class images folder under names not taken yet (generated class images and
    earlier imports are never overwritten); their .txt captions come along."""
    staging = folder / ".import"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = prepare_images(images, staging, resolution, "center")
        moved = []
        for path in result.written:
            moved.append(free_path(folder, path.stem, ".png"))
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
