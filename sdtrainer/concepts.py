"""The subjects of a run: the config's single-subject fields, its `concepts` list and the folder tree.

    subjects = run_subjects(cfg)     # [Subject(token, class_word, paths, reg_images, class_images, repeats)]
    [(s.token, s.class_word) for s in subjects]

`cfg.images` follows the old repos' convention (folder_subjects): images at its root are
`<token> <class_word>` of the config, `images/<t>/<c>/` images are `t c`. Each entry of `cfg.concepts`
adds a subject with its own folder. A subject's class images come from its own `reg_images`, else
from the run's `reg_images` (its `<class_word>/` sub-folder, or the root for the run's class word),
else `class_images` are generated (into `<folder>/<class_word>/` when the run has several class words).

A subject has three homes, one per layer, and no other type stands for one:
- `config.Concept` is what a user writes (a `concepts:` entry of a YAML file; the single-subject fields
  `token`/`class_word`/`images` are the first): folder names and optional numbers, checked by OmegaConf.
- `Subject` here is what a run trains: the same subject resolved, its photos listed, its class images
  folder found, its counts filled in from the run's. It is made only by `run_subjects` (and
  `folder_subjects`), so the trainer never reads a Concept's optional fields.
- `sdtrainer.ui.projects.Subject` is a subject of a project (project.json and its folders), which the
  Training tab turns into the config's fields.
"""
from dataclasses import dataclass, replace
from pathlib import Path

from sdtrainer.config import ConfigError, TrainConfig
from sdtrainer.images import DatasetError, list_images, subfolders
from sdtrainer.messages import Message


@dataclass
class Subject:
    """One subject of a run (see the module's docstring); folder_subjects leaves the last three at their defaults."""
    token: str
    class_word: str
    paths: list[Path]  # its photos
    reg_images: Path | None = None  # the folder of its class images, None: generate `class_images` of them
    class_images: int = 0  # how many to generate when reg_images is None
    repeats: int = 1  # its share of the picks: repeats / sum of all subjects' repeats

    @property
    def words(self) -> tuple[str, str]:
        return self.token, self.class_word


def run_subjects(cfg: TrainConfig) -> list[Subject]:
    """Every subject the run trains, in a fixed order: the images folder's, then cfg.concepts'."""
    found = []
    if cfg.images.strip():
        for s in folder_subjects(cfg.images, cfg.token.strip(), " ".join(cfg.class_word.split())):
            found.append(replace(s, reg_images=reg_for(cfg.reg_images, s.class_word, cfg.class_word),
                                 class_images=cfg.class_images, repeats=cfg.repeats))
    for n, c in enumerate(cfg.concepts):
        paths = list_images(c.images)
        if not paths:
            raise DatasetError(Message("sub_concept_no_images", n=n, folder=c.images, token=c.token,
                                       class_word=c.class_word))
        count = cfg.class_images if c.class_images is None else c.class_images
        reg = reg_for(c.reg_images or cfg.reg_images, c.class_word, c.class_word if c.reg_images else cfg.class_word)
        if c.reg_images and reg is None:
            raise DatasetError(Message("sub_concept_reg_empty", n=n, folder=c.reg_images, class_word=c.class_word))
        found.append(Subject(c.token.strip(), " ".join(c.class_word.split()), paths, reg, count, c.repeats))
    if not found:
        raise ConfigError(Message("sub_no_photos", images=cfg.images))
    _check_tokens_unique(found)
    return found


def _check_tokens_unique(subjects: list[Subject]) -> None:
    """A token stands for one subject: two subjects (from the folder tree, `concepts`, or both) may not share one."""
    seen: dict[str, Subject] = {}
    for s in subjects:
        other = seen.setdefault(s.token.lower(), s)
        if other is not s:
            raise ConfigError(Message("sub_token_twice", token=s.token, class_word=s.class_word,
                                      folder=s.paths[0].parent, first_token=other.token,
                                      first_class=other.class_word, first_folder=other.paths[0].parent))


def reg_for(reg_root: str | None, class_word: str, root_class_word: str) -> Path | None:
    """The class images folder of a subject (see class_folder); a reg folder that is not there, or
    holds no images at all (none at its root nor in its sub-folders), fails: it is the wrong folder."""
    if not reg_root:
        return None
    if not Path(reg_root).is_dir():
        raise DatasetError(Message("sub_reg_missing", folder=reg_root))
    if not list_images(reg_root) and not any(list_images(folder) for folder in subfolders(reg_root)):
        raise DatasetError(Message("sub_reg_empty", folder=reg_root))
    return class_folder(reg_root, " ".join(class_word.split()), " ".join(root_class_word.split()))


def generated_class_dir(base: Path, subjects: list[Subject], class_word: str) -> Path:
    """Where generated class images of `class_word` go: `base` itself for a run of one class word (as before),
    else `base/<class_word>/` (the layout `reg_images` reads back)."""
    return base if len({s.class_word for s in subjects}) == 1 else base / class_word


# ---------------------------------------------------------------- several subjects from a folder tree

def folder_subjects(root: str | Path, token: str, class_word: str) -> list[Subject]:
    """The subjects of a folder tree (the old repos' convention), their class images and repeats left for
    run_subjects to fill in: images at the root are ``token class`` (the arguments); ``<t>/<c>/`` images
    are ``t c``; images right inside ``<t>/`` are ``t class_word``.

    ``images/photo.jpg`` -> (ohwx, person), ``images/effy/dog/a.jpg`` -> (effy, dog); ``_`` in a class
    folder's name are spaces (``rex/golden_retriever/`` -> (rex, golden retriever)). Folders without
    images are skipped; DatasetError when images need the token or class word and it is not set.
    """
    root = Path(root)
    found = [Subject(token, class_word, list_images(root))]
    for first in subfolders(root):
        found.append(Subject(first.name, class_word, list_images(first)))
        found += [Subject(first.name, " ".join(second.name.replace("_", " ").split()), list_images(second))
                  for second in subfolders(first)]
    found = [s for s in found if s.paths]
    for s in found:
        if not s.token.strip() or not s.class_word.strip():
            raise DatasetError(Message("sub_tree_unset", folder=s.paths[0].parent))
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
