"""Replays the security probe and the fault cases of issue 13 against this checkout, and reports what held.

    python bench/abuse.py                 # every case, ~1-2 min on a laptop CPU (no GPU, no network)
    python bench/abuse.py --quick         # without the cases that train (a few seconds)
    python bench/abuse.py --json out.json # also write the results

Each case attacks or breaks something the way a web page, a careless user or a full disk would, and checks
the outcome the app promises (README, "Security and data safety"). The app runs in this process on
127.0.0.1 with throw-away folders and the demo model. Exit code 1 when a case did not hold, so the next
probe starts from here: add a case for every new finding.
"""
import argparse
import asyncio
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES: list[tuple[str, str, Callable, bool]] = []  # (name, what must hold, check, trains)


def case(name: str, holds: str, trains: bool = False):
    def register(check):
        CASES.append((name, holds, check, trains))
        return check
    return register


class Lab:
    """Throw-away folders, the demo model, and two launched apps (without and with a login)."""

    def __init__(self, root: Path):
        from sdtrainer.ui.app import build_app

        self.root = root
        self.apps = {}
        for name, auth in (("open", None), ("auth", ("joe", "s3cret"))):
            app = build_app(root / name / "models", root / name / "outputs")
            app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                       auth=auth)
            self.apps[name] = app
        self.app = self.apps["open"]
        self.demo = self.app.state.outputs_dir / "demo" / "sdtrainer-demo-tiny.safetensors"

    def url(self, path: str = "", app: str = "open") -> str:
        return self.apps[app].local_url + path

    def close(self) -> None:
        for app in self.apps.values():
            app.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(lab: Lab, api_name: str, **kwargs):
    """A Gradio endpoint through gradio_client: (result, None) or (None, error text)."""
    from gradio_client import Client

    try:
        return Client(lab.url(), verbose=False).predict(api_name=api_name, **kwargs), None
    except Exception as e:  # noqa: BLE001 - the probe reports whatever came back
        return None, str(e)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdtrainer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess) -> bool:
    err = proc.stderr.strip()
    return proc.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------ 1. who can talk to the server

@case("dns-rebinding", "a request naming another host (a rebound name) gets 403 on every route")
def dns_rebinding(lab: Lab) -> bool:
    import httpx

    port = lab.app.server_port
    codes = [httpx.get(lab.url(path), headers={"Host": f"attacker.example:{port}"}).status_code
             for path in ("", "config", "gradio_api/info", f"gradio_api/file={lab.demo}")]
    return codes == [403] * 4


@case("cross-site-post", "a POST from another site's page to 127.0.0.1 gets 403; the app's own page works")
def cross_site_post(lab: Lab) -> bool:
    import httpx

    url = lab.url("gradio_api/call/refresh_lists")
    foreign = httpx.post(url, json={"data": []}, headers={"Origin": "http://attacker.example"})
    own = httpx.post(url, json={"data": []}, headers={"Origin": lab.url().rstrip("/")})
    return foreign.status_code == 403 and own.status_code == 200


@case("login-page-leak", "the login page shows no API description and no server path")
def login_page_leak(lab: Lab) -> bool:
    import httpx

    page = httpx.get(lab.url(app="auth")).text
    return str(lab.apps["auth"].state.outputs_dir) not in page and "/prune" not in page


@case("login-throttle", "wrong passwords are slow, and 5 failures a minute lock the login")
def login_throttle(lab: Lab) -> bool:
    from sdtrainer.ui.guard import LoginLimiter, slow_login

    check = slow_login("joe", "s3cret", LoginLimiter(), delay_s=0)
    wrong = [asyncio.run(check("joe", f"guess{i}")) for i in range(5)]
    return not any(wrong) and not asyncio.run(check("joe", "s3cret"))


@case("no-auth-blank", "--auth ' : ' is refused")
def blank_auth(lab: Lab) -> bool:
    import webui

    try:
        webui.parse_auth(" : ")
    except ValueError:
        return True
    return False


# ------------------------------------------------------------------ 2. what the API may touch

@case("file-outside-outputs", "file= serves nothing outside outputs/")
def file_outside(lab: Lab) -> bool:
    import httpx

    return httpx.get(lab.url("gradio_api/file=/etc/passwd")).status_code in (403, 404)


@case("prune-any-path", "/prune refuses a source outside models/ and outputs/ and leaves it untouched")
def prune_any_path(lab: Lab) -> bool:
    victim = lab.root / "victim.safetensors"
    victim.write_bytes(lab.demo.read_bytes())
    before = victim.read_bytes()
    _, error = call(lab, "/prune", source=str(victim), upload=None, half=True, ema="drop", fmt=".safetensors",
                    out_name=victim.name, overwrite=True)
    return error is not None and "outside" in error and victim.read_bytes() == before


@case("import-any-folder", "/dataset_import_class_folder refuses a folder outside the app's folders")
def import_any_folder(lab: Lab) -> bool:
    from PIL import Image

    from sdtrainer.ui.projects import Project

    Project.create(lab.app.state.projects_dir, "probe")
    private = lab.root / "private"
    private.mkdir(exist_ok=True)
    Image.new("RGB", (128, 128), "red").save(private / "secret.png")
    _, error = call(lab, "/dataset_import_class_folder", name="probe", folder=str(private))
    copied = list((lab.app.state.projects_dir / "probe").rglob("secret*"))
    return error is not None and "outside" in error and not copied


@case("crafted-project-json", "a project.json naming ../ folders is refused; nothing is made outside")
def crafted_project(lab: Lab) -> bool:
    from sdtrainer.ui.i18n import UIError
    from sdtrainer.ui.projects import Project

    project = Project.create(lab.root / "projects", "crafted")
    data = json.loads((project.root / "project.json").read_text())
    data["subjects"] = [{"token": "../../../escaped", "class_word": "dog"}]
    (project.root / "project.json").write_text(json.dumps(data))
    try:
        Project.open(project.root)
    except UIError:
        return not (lab.root / "escaped").exists()
    return False


# ------------------------------------------------------------------ 3. hostile files

@case("decompression-bomb", "a small PNG announcing 13000x13000 px is refused from its header, in well under 1 s")
def decompression_bomb(lab: Lab) -> bool:
    from PIL import Image

    from sdtrainer.checks import validate_images

    path = lab.root / "bomb.png"
    Image.new("I;16", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 13000, 13000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    started = time.monotonic()
    report = validate_images([path], 64)
    return not report.ok_paths and "100 megapixels" in report.errors[0].message and time.monotonic() - started < 1


@case("malicious-pickle", "a .ckpt whose pickle calls os.system is refused before anything runs")
def malicious_pickle(lab: Lab) -> bool:
    import torch

    from sdtrainer.checkpoint import CheckpointError, load_model

    marker = lab.root / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = lab.root / "evil.ckpt"
    torch.save({"state_dict": {"x": Evil()}}, path)
    try:
        load_model(path)
    except CheckpointError:
        return not marker.exists()
    return False


@case("nested-ckpt", "a 5000-level nested .ckpt is one CheckpointError, not a RecursionError")
def nested_ckpt(lab: Lab) -> bool:
    import torch

    from sdtrainer.checkpoint import CheckpointError, load_model

    nested = inner = {}
    for _ in range(5000):
        inner["x"] = inner = {}
    inner["w"] = torch.zeros(1)
    path = lab.root / "deep.ckpt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)
    try:
        torch.save({"state_dict": nested}, path)
    finally:
        sys.setrecursionlimit(limit)
    try:
        load_model(path)
    except CheckpointError:
        return True
    return False


@case("caption-surrogate", "a caption with a lone surrogate is refused and the existing caption kept")
def caption_surrogate(lab: Lab) -> bool:
    from PIL import Image

    from sdtrainer.ui.i18n import UIError
    from sdtrainer.ui.projects import Project

    subject = Project.create(lab.root / "projects", "captions").subject()
    for folder in (subject.instance_dir, subject.prepared_dir):
        Image.new("RGB", (64, 64), "blue").save(folder / "a.png")
    subject.set_caption("a.png", "ohwx person")
    try:
        subject.set_caption("a.png", "ohwx \ud800")
    except UIError:
        return (subject.prepared_dir / "a.txt").read_text(encoding="utf-8") == "ohwx person\n"
    return False


@case("caption-encodings", "captions saved as UTF-16 or Windows-1252 keep their words")
def caption_encodings(lab: Lab) -> bool:
    from sdtrainer.captions import decode_text

    text = "ohwx person at the café"
    return all(decode_text(text.encode(e)) == text for e in ("utf-8", "utf-8-sig", "utf-16", "cp1252"))


# ------------------------------------------------------------------ 4. saves and full disks

@case("stale-temp-files", "temp files of crashed saves are removed at start; a running save's are kept")
def stale_temp_files(lab: Lab) -> bool:
    from sdtrainer.checkpoint import remove_stale_temp_files, temp_path

    folder = lab.root / "runs" / "crashed" / "state"
    folder.mkdir(parents=True)
    crashed = folder / ".last.ckpt.999999999-0123abcd.tmp.ckpt"
    crashed.write_bytes(b"half")
    running = temp_path(folder / "last.ckpt")
    running.write_bytes(b"being written")
    removed = remove_stale_temp_files(lab.root / "runs")
    return removed == [crashed] and running.exists()


@case("model-save-full-disk", "a model save without room is one message and leaves no file behind")
def model_save_full_disk(lab: Lab) -> bool:
    from sdtrainer import checkpoint
    from sdtrainer.checkpoint import CheckpointError, load_model, save_checkpoint

    model, _ = load_model(lab.demo)
    folder = lab.root / "full"
    folder.mkdir()
    real = checkpoint.free_bytes
    checkpoint.free_bytes = lambda f: 1000
    try:
        save_checkpoint(model, folder / "m.safetensors")
    except CheckpointError as e:
        return "Not enough disk space" in str(e) and not any(folder.iterdir())
    finally:
        checkpoint.free_bytes = real
    return False


def train_tiny(lab: Lab, run: Path, steps: int, resume: bool = False):
    from PIL import Image

    from sdtrainer.config import load_config
    from sdtrainer.trainer import RunControl, run_training

    photos = lab.root / "photos"
    if not photos.is_dir():
        photos.mkdir()
        for i in range(3):
            Image.effect_noise((64, 64), 60 + 10 * i).convert("RGB").save(photos / f"{i}.png")
    cfg = load_config("24gb", values={"model": str(lab.demo), "images": str(photos), "token": "ohwx",
                                      "class_word": "thing", "resolution": 64, "device": "cpu", "precision": "32",
                                      "steps": steps, "save_every": 0, "preview_every": 0, "preview_prompts": [],
                                      "prior_loss_weight": 0.0, "class_images": 0})
    return run_training(cfg, run, lambda event: None, RunControl(), resume=resume)


@case("state-save-tmpdir", "the training state is written in the run folder, whatever TMPDIR is", trains=True)
def state_save_tmpdir(lab: Lab) -> bool:
    saved, tempfile.tempdir = tempfile.tempdir, str(lab.root / "no-such-tmp")
    try:
        result = train_tiny(lab, lab.root / "runs" / "tmpdir", steps=1)
    finally:
        tempfile.tempdir = saved
    return result.step == 1 and (lab.root / "runs" / "tmpdir" / "state" / "last.ckpt").is_file()


@case("state-save-full-disk", "a full disk during a state save is one message, no partial file, resume works",
      trains=True)
def state_save_full_disk(lab: Lab) -> bool:
    import torch

    from sdtrainer.checkpoint import CheckpointError

    run = lab.root / "runs" / "full"
    train_tiny(lab, run, steps=1)
    real_save = torch.save

    def fill_the_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"\0" * 10_000)
        raise OSError(errno.ENOSPC, "No space left on device")

    torch.save = fill_the_disk
    try:
        train_tiny(lab, run, steps=2, resume=True)
        return False
    except CheckpointError as e:
        clean = "Not enough disk space" in str(e) and not [p for p in run.rglob(".*")]
    finally:
        torch.save = real_save
    return clean and train_tiny(lab, run, steps=2, resume=True).step == 2


@case("resume-damaged-state", "--resume on a truncated state is one line, without torch's weights_only advice",
      trains=True)
def resume_damaged_state(lab: Lab) -> bool:
    run = lab.root / "runs" / "damaged"
    train_tiny(lab, run, steps=1)
    state = run / "state" / "last.ckpt"
    state.write_bytes(state.read_bytes()[:4000])
    proc = cli("train", "--resume", str(run), "--set", "steps=2")
    return proc.returncode == 1 and "Cannot resume" in proc.stderr and "weights_only" not in proc.stderr \
        and "Traceback" not in proc.stderr


# ------------------------------------------------------------------ 5. the command line

@case("cli-errors", "bad command lines are one line each, never a traceback")
def cli_errors(lab: Lab) -> bool:
    out = lab.root / "cli"
    out.mkdir(exist_ok=True)
    (out / "a-file").write_text("x")
    train = ["train", "--model", str(lab.demo), "--images", str(out), "--class-word", "thing", "--device", "cpu"]
    cases = [
        [*train, "--token", "ohwx", "--out", str(out / "r"), "--set", "preview_seeds=[1, 2"],
        [*train, "--token", "two words", "--out", str(out / "r")],
        [*train, "--token", "ohwx", "--out", str(out / "a-file")],
        [*train, "--token", "ohwx", "--out", "/proc/sdtrainer-probe"],
        ["demo-model", "--out", str(out)],
        ["prune", str(lab.demo), str(out)],
        ["generate", "--model", str(lab.demo), "--prompt", "x", "--eta", "-1", "--out", str(out)],
        ["generate", "--model", str(lab.demo), "--prompt", "x", "--seed", "9" * 30, "--out", str(out)],
    ]
    held = all(one_line(cli(*args)) for args in cases)
    count = cli("class-images", "--model", str(lab.demo), "--class-word", "x", "--count", "-1", "--out", str(out))
    return (held and count.returncode == 2 and "Traceback" not in count.stderr
            and not (out / "a-file.safetensors").exists())


@case("port-in-use", "a port in use is one line naming --port")
def port_in_use(lab: Lab) -> bool:
    proc = subprocess.run([sys.executable, "webui.py", "--port", str(lab.app.server_port)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    return one_line(proc) and "--port" in proc.stderr


@case("session-memory", "pages opened one after another do not each keep ~0.4 MB on the server for good")
def session_memory(lab: Lab) -> bool:
    from sdtrainer.ui.app import SESSIONS_KEPT

    holder = lab.app.state_holder
    for i in range(3 * SESSIONS_KEPT):  # what each new page's first event does
        holder[f"abuse-page-{i}"]
    return len(holder.session_data) <= SESSIONS_KEPT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="leave out the cases that train (each ~10-60 s on a CPU)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="sdtrainer-abuse-") as tmp:
        lab = Lab(Path(tmp))
        try:
            for name, holds, check, trains in CASES:
                if trains and args.quick:
                    continue
                try:
                    ok, detail = bool(check(lab)), ""
                except Exception as e:  # noqa: BLE001 - a crash is a finding too
                    ok, detail = False, f"{type(e).__name__}: {e}"
                results.append({"case": name, "holds": holds, "held": ok, "detail": detail})
                print(f"{'held  ' if ok else 'FAILED'} {name}: {holds}{' -- ' + detail if detail else ''}",
                      flush=True)
        finally:
            lab.close()
    failed = [r["case"] for r in results if not r["held"]]
    print(f"\n{len(results) - len(failed)} of {len(results)} held"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
