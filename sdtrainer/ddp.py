"""A training run on several devices: one process per device, started by the process that runs the app or the CLI.

    results = launch(2, train_process, (cfg, data, ...), emit, control)  # what train_process(channel, ...) returned,
                                                                         # process by process

Lightning's `ddp` strategy launches by starting the command line again (a second `python webui.py`), and
`ddp_spawn` pickles the trainer with its callbacks; neither suits a run that lives in a thread of the app and
reports through callbacks. So this module does what `torchrun` does: it spawns fresh Python processes with the
rendezvous in their environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK), where Lightning's `ddp`
joins the process group instead of launching; each calls `target(channel, *args)`.

What crosses between this process and them:
- events: process 0's `channel.emit` queues them and `launch` passes them to `emit` in this thread (the other
  processes emit nothing);
- pause and stop: `channel.control` is a RunControl over process-shared events that `launch` keeps equal to the
  caller's `control`. Process 0 reads it between steps and broadcasts what it read (sdtrainer.trainer.Controller),
  so every process pauses and stops after the same step;
- the end: each process's return value, or its error. An error ends the other processes at once (they would wait
  for the failed one in their next collective) and is raised here, with the failed process's traceback as its
  cause. The processes ignore Ctrl+C: this one asks them for a clean stop (and kills them if it exits mid-run).
"""
import atexit
import os
import pickle
import queue
import signal
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.multiprocessing as mp

from sdtrainer.control import RunControl

POLL_S = 0.2  # how often the launcher passes on pause and stop, and looks for processes that died silently
EXIT_WAIT_S = 60.0  # how long a process that has returned may take to exit (tearing down its process group)


@dataclass
class Channel:
    """What one process of a run has of the launcher: its rank, the shared pause and stop, and its way back."""

    rank: int
    processes: int
    control: RunControl
    messages: Any  # a multiprocessing queue to the launcher

    def emit(self, event) -> None:
        """Pass a trainer event on to the launcher's `emit` (process 0 only: one report of the run)."""
        if self.rank == 0:
            self.messages.put(("event", self.rank, event))


class ProcessFailed(RuntimeError):
    """Where an error of one training process happened: its traceback (the cause of the error `launch` raises)."""


def launch(processes: int, target: Callable, args: tuple, emit: Callable, control: RunControl) -> list:
    """Run `target(channel, *args)` in `processes` new processes; return their return values in rank order."""
    context = mp.get_context("spawn")
    messages, shared = context.Queue(), RunControl(context.Event)
    port, threads = free_port(), max(1, torch.get_num_threads() // processes)
    workers = [context.Process(target=run_process, name=f"sdtrainer-process-{rank}", daemon=True,
                               args=(target, Channel(rank, processes, shared, messages), port, threads, args))
               for rank in range(processes)]
    for worker in workers:
        worker.start()
    atexit.register(end, workers, 0.0)  # this program exiting mid-run (a second Ctrl+C) ends them, never waits
    results: dict[int, Any] = {}
    try:
        while len(results) < processes:
            shared.copy_from(control)
            try:
                kind, rank, payload = messages.get(timeout=POLL_S)
            except queue.Empty:
                check_alive(workers, results)
                continue
            if kind == "event":
                emit(payload)
            elif kind == "done":
                results[rank] = payload
            else:
                error, trace = payload
                raise error from ProcessFailed(f"in training process {rank}:\n{trace}")
    finally:
        end(workers, EXIT_WAIT_S if len(results) == processes else 0.0)
        atexit.unregister(end)
    return [results[rank] for rank in range(processes)]


def run_process(target: Callable, channel: Channel, port: int, threads: int, args: tuple) -> None:
    """The body of one spawned process: the rendezvous, then target; its result or error goes to the launcher."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(channel.processes),
                      RANK=str(channel.rank), LOCAL_RANK=str(channel.rank), NODE_RANK="0")
    torch.set_num_threads(threads)
    try:
        channel.messages.put(("done", channel.rank, target(channel, *args)))
    except Exception as error:  # noqa: BLE001 - every failure must reach the launcher, which raises it
        channel.messages.put(("failed", channel.rank, (picklable(error), traceback.format_exc())))


def picklable(error: Exception) -> Exception:
    """The error itself when it can cross to the launcher, else a RuntimeError with its type and text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any error type may fail to pickle, each in its own way
        return RuntimeError(f"{type(error).__name__}: {error}")


def check_alive(workers: list, results: dict) -> None:
    """RuntimeError when a process ended without a word (killed, out of host memory, crashed in C)."""
    for rank, worker in enumerate(workers):
        if rank not in results and worker.exitcode not in (None, 0):
            raise RuntimeError(f"Training process {rank} ended with exit code {worker.exitcode} before the run did "
                               "(killed, or out of host memory?).")


def end(workers: list, wait_s: float) -> None:
    """Let each process exit within wait_s, then kill those still there. SIGKILL, not SIGTERM: Lightning catches
    SIGTERM to stop after the current step, which a process waiting for a failed one in a collective never ends."""
    for worker in workers:
        worker.join(wait_s)
        if worker.is_alive():
            worker.kill()
            worker.join()


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now, for the processes' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
