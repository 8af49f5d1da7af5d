"""Start the sdtrainer web app: `python webui.py` (launch.sh / launch.bat do this for you).

    python webui.py [--port 7860] [--listen --auth user:password] [--lang en|fr] [--open-browser]
                    [--models-dir models] [--outputs-dir outputs] [--allow-dir FOLDER] [--allow-host NAME]

It serves on 127.0.0.1 (this computer only) unless --listen, which needs --auth so that nobody else
on the network can use the GPU or read your photos. The UI itself is built by
sdtrainer.ui.app.build_app; nothing happens at import time.
"""
import argparse
import socket
import sys
from pathlib import Path

from sdtrainer.messages import Message

HERE = Path(__file__).resolve().parent
DEFAULT_PORT = 7860  # Gradio's, and AUTOMATIC1111's: often taken
PORTS_TO_TRY = 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python webui.py", description="sdtrainer web app")
    p.add_argument("--port", type=int, default=None,
                   help=f"port to serve on (default {DEFAULT_PORT}, or the next free one when another program has it)")
    p.add_argument("--listen", action="store_true", help="serve on every network interface (needs --auth)")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require this login (required with --listen)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (e.g. behind a proxy; '*': any name). "
                        "Other names are refused, so that no web page can reach the app through DNS rebinding")
    p.add_argument("--allow-dir", action="append", default=[], type=Path, metavar="FOLDER",
                   help="a folder besides models/ and outputs/ whose files the app may read (checkpoints, class "
                        "images); repeatable")
    p.add_argument("--lang", choices=["en", "fr"], help="interface language (default: the browser's)")
    p.add_argument("--open-browser", action="store_true", help="open the app in the browser once it runs")
    p.add_argument("--models-dir", type=Path, default=HERE / "models", help="folder of base checkpoints")
    p.add_argument("--outputs-dir", type=Path, default=HERE / "outputs", help="folder for everything written")
    return p


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'user:password' -> ('user', 'password'); ValueError with what to write otherwise."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    user = user.strip()  # Gradio strips the name typed on the login page
    if not sep or not user or not password.strip():
        raise ValueError(Message("server_auth_form"))
    return user, password


def check_args(args: argparse.Namespace) -> tuple[str, tuple[str, str] | None]:
    """(host to serve on, login) or ValueError with what to change."""
    auth = parse_auth(args.auth)
    if args.listen and auth is None:
        raise ValueError(Message("server_listen_needs_auth"))
    if args.port is not None and not 1 <= args.port <= 65535:
        raise ValueError(Message("server_port_range", port=args.port))
    return ("0.0.0.0" if args.listen else "127.0.0.1"), auth


def is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, asked: int | None) -> int:
    """The port asked for with --port (ValueError when taken), else 7860 or the next free one after it (said)."""
    if asked is not None:
        if not is_free(host, asked):
            raise ValueError(Message("server_port_busy", port=asked, next=asked + 1))
        return asked
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORTS_TO_TRY):
        if is_free(host, port):
            if port != DEFAULT_PORT:
                print(f"Port {DEFAULT_PORT} is in use (AUTOMATIC1111 uses it too); serving on port {port} instead. "
                      f"Choose one with --port.")
            return port
    raise ValueError(Message("server_ports_busy", first=DEFAULT_PORT, last=DEFAULT_PORT + PORTS_TO_TRY - 1))


def remove_leftovers(*folders: Path) -> None:
    """Deletes the temporary files that an interrupted save left behind (up to a model's size each)."""
    from sdtrainer.checkpoint import remove_stale_temp_files

    for path in remove_stale_temp_files(*folders):
        print(f"Removed {path}, a temporary file left by an interrupted save.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        host, auth = check_args(args)
        port = pick_port(host, args.port)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from sdtrainer.ui.app import build_app  # imports torch and gradio: only once the arguments are good
    from sdtrainer.ui.guard import this_computers_names

    remove_leftovers(args.models_dir, args.outputs_dir)
    app = build_app(args.models_dir, args.outputs_dir, lang=args.lang, allowed_dirs=tuple(args.allow_dir))
    app.queue(default_concurrency_limit=1)
    hosts = (*args.allow_host, *(this_computers_names() if args.listen else ()))
    # quiet: Gradio's banner advertises share=True, a public link this app never wants; we say where it runs
    app.launch(server_name=host, server_port=port, auth=auth, inbrowser=args.open_browser, allowed_hosts=hosts,
               quiet=True, prevent_thread_lock=True)
    print(f"sdtrainer is running on {app.local_url} (Ctrl+C stops it).", flush=True)
    app.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
