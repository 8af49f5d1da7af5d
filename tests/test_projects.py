"""sdtrainer/ui/projects.py: project.json lists every subject; a file from before (the first subject at its top
level) opens with nothing lost and is written anew on save, its photos left where they are; a crafted file
names no folder outside the project."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdtrainer.ui.i18n import UIError
from sdtrainer.ui.projects import FORMAT, Project


def photo(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((64, 64, 3)) * 255).astype("uint8")).save(path)
    return path


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "project.json")


def subjects_of(project: Project) -> list[dict]:
    return [s.saved() for s in project.subjects]


# A project.json written before every subject was in `subjects`: the first one's words, warnings and crops at
# the top level, its photos in the project's own instance/ and prepared/; the others' under subjects/<token>/.
OLD_FILE = {
    "token": "zwx", "class_word": "cat", "resolution": 128, "crop": "face",
    "warnings": {"a.png": [["blurry", "The photo is blurry."]], "b.png": []},
    "crops": {"a.png": "start"},
    "subjects": [
        {"token": "effy", "class_word": "dog", "warnings": {"e.png": [["no_face", "No face found."]]},
         "crops": {"e.png": "end"}},
        {"token": "rex", "class_word": "golden retriever", "warnings": {}, "crops": {}},
    ],
}


@pytest.fixture
def old_project(tmp_path) -> Path:
    root = tmp_path / "projects" / "legacy"
    for name, seed in (("a", 1), ("b", 2)):
        photo(root / "instance" / f"{name}.png", seed)
        photo(root / "prepared" / f"{name}.png", seed)
    (root / "prepared" / "a.txt").write_text("zwx cat on a sofa\n")
    photo(root / "reg" / "class-00000.png", 3)  # cat: the first subject's class images are reg/ itself
    photo(root / "subjects" / "effy" / "instance" / "e.png", 4)
    photo(root / "subjects" / "effy" / "prepared" / "e.png", 4)
    photo(root / "reg" / "dog" / "class-00000.png", 5)
    (root / "subjects" / "rex" / "instance").mkdir(parents=True)
    (root / "project.json").write_text(json.dumps(OLD_FILE))
    return root


def test_an_old_project_json_opens_with_nothing_lost(old_project):
    root = old_project
    project = Project.open(root)
    assert (project.resolution, project.crop) == (128, "face")
    assert subjects_of(project) == [
        {"token": "zwx", "class_word": "cat", "folder": "", "warnings": OLD_FILE["warnings"],
         "crops": {"a.png": "start"}},
        {"token": "effy", "class_word": "dog", "folder": "subjects/effy", **OLD_FILE["subjects"][0]},
        {"token": "rex", "class_word": "golden retriever", "folder": "subjects/rex", "warnings": {}, "crops": {}}]
    zwx, effy, rex = project.subjects
    assert [p.name for p in zwx.photos()] == ["a.png", "b.png"] == [p.name for p in zwx.prepared()]
    assert zwx.prepared_dir == root / "prepared" and zwx.caption(root / "prepared" / "a.png") == "zwx cat on a sofa"
    assert zwx.class_images() == [root / "reg" / "class-00000.png"]
    assert [p.name for p in effy.photos()] == ["e.png"] and effy.prepared() == [root / "subjects/effy/prepared/e.png"]
    assert effy.class_images() == [root / "reg" / "dog" / "class-00000.png"]
    assert rex.photos() == [] and rex.class_dir == root / "reg" / "golden retriever"
    assert json.loads((root / "project.json").read_text()) == OLD_FILE  # opening writes nothing


def test_an_old_project_is_saved_in_the_new_layout_and_its_files_stay(old_project):
    root = old_project
    files = files_of(root)
    project = Project.open(root)
    project.save()
    saved = json.loads((root / "project.json").read_text())
    assert set(saved) == {"format", "resolution", "crop", "subjects"} and saved["format"] == FORMAT
    assert saved["subjects"] == subjects_of(project)
    again = Project.open(root)
    assert subjects_of(again) == subjects_of(project) and (again.resolution, again.crop) == (128, "face")
    first = again.subject()
    again.set_words(first, "zed", "cat")  # the first subject's photos stay in instance/ and prepared/
    again.set_words(again.subject("effy"), "effie", "dog")  # an added subject's folder follows its token
    again.save()
    moved = [f.replace("subjects/effy/", "subjects/effie/") for f in files]
    assert files_of(root) == sorted(moved) and [p.name for p in Project.open(root).subject("zed").prepared()] == [
        "a.png", "b.png"]


@pytest.mark.parametrize("crafted", [
    {"subjects": [{"token": "ohwx", "class_word": "person", "folder": ""},
                  {"token": "../../../escaped", "class_word": "dog", "folder": "subjects/../../../escaped"}]},
    {"subjects": [{"token": "effy", "class_word": "../../escaped", "folder": "subjects/effy"}]},
    {"subjects": [{"token": "effy", "class_word": "dog", "folder": "../../escaped"}]},
    {"subjects": [{"token": "effy", "class_word": "dog", "folder": "subjects/rex"}]},  # not the folder of its token
    {"subjects": [{"token": "../../../escaped", "class_word": "dog"}]},  # no folder
    {"subjects": []},
    {"subjects": "not a list"},
])
def test_a_crafted_project_json_makes_no_folder_outside_the_project(tmp_path, crafted):
    project = Project.create(tmp_path / "outputs" / "projects", "joe")
    data = json.loads((project.root / "project.json").read_text())
    (project.root / "project.json").write_text(json.dumps({**data, **crafted}))
    assert_refused(project.root, tmp_path)


@pytest.mark.parametrize("crafted", [
    {"token": "zwx", "class_word": "/tmp/escaped"},
    {"token": "zwx", "class_word": "cat", "subjects": [{"token": "../../../escaped", "class_word": "dog"}]},
    {"token": "zwx", "class_word": "cat", "subjects": "not a list"},
    ["not", "a", "mapping"],
])
def test_a_crafted_old_project_json_makes_no_folder_outside_the_project(tmp_path, crafted):
    root = tmp_path / "outputs" / "projects" / "legacy"
    root.mkdir(parents=True)
    (root / "project.json").write_text(json.dumps(crafted))
    assert_refused(root, tmp_path)


def assert_refused(root: Path, top: Path) -> None:
    before = sorted(str(p) for p in top.rglob("*"))
    with pytest.raises(UIError) as caught:
        Project.open(root)
    assert caught.value.key == "err_project_damaged"
    assert sorted(str(p) for p in top.rglob("*")) == before and not Path("/tmp/escaped").exists()
