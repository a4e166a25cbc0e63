# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""`qface analyze --workers N`: reading, face detection and alignment of the images in N worker processes.

Detection and alignment (the pipeline's `preprocess`: RetinaFace, the landmark refinement and the crops) are most of
the time of an image with a small model (docs/threads.md), and they are independent per image, so the workers do
them. The main process keeps everything that decides what the file holds: it takes the workers' results in input
order and runs the pipeline's own batching, forward pass and postprocessing on them, exactly as one process does.
So the faces are batched the same way and the output file is byte for byte the one a single process writes (a
forward pass on another mix of faces would differ in the last digits), `--resume` works unchanged, and an image
that cannot be read is the same failure line at the same place.

Workers are started with the 'spawn' context (torch and onnxruntime thread pools do not survive `fork`), ignore
Ctrl-C (the main process stops them: the images in progress finish, the others are cancelled) from their first
instruction on, and, on Linux, are killed when the main process dies, so no worker outlives a run.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch

from ..model.image_loading_qface import ImageLoadError, load_image_rgb
from ..model.threads_qface import ENV_VAR, OMP_ENV_VAR, configure_threads, default_num_threads, resolve_num_threads

# Images handed to the workers ahead of the one the main process waits for, per worker: enough to keep each busy
# while the main process runs a batch, few enough that the decoded crops waiting in memory stay small.
IMAGES_AHEAD_PER_WORKER = 4

# How often the main process, waiting for a worker's image, looks whether Ctrl-C was pressed.
CTRL_C_POLL_S = 0.1

_HAVE_SIGMASK = hasattr(signal, "pthread_sigmask")  # not on Windows, where Ctrl-C does not go by process group
_CTRL_C = (signal.SIGINT,)


def threads_per_process(workers: int, requested: int | None = None) -> int:
    """Intra-op threads of each process (the main one and every worker): --threads or the environment when given,
    else the default thread count shared out between the workers (at least 1)."""
    if requested is not None or os.environ.get(ENV_VAR, "").strip() or os.environ.get(OMP_ENV_VAR, "").strip():
        return resolve_num_threads(requested)
    return max(1, default_num_threads() // workers)


class PreprocessPool:
    """N worker processes that read and preprocess image files; `results` gives them back in input order.

    `build_pipeline`: a picklable callable (a module-level function or a `functools.partial` of one) that returns
    the face-analysis pipeline in a worker; `preprocess_params`: the pipeline's sanitised preprocess parameters.

    Every call that starts workers, waits on them or stops them (`submit`, the wait for an image, `shutdown`) runs
    with Ctrl-C deferred (`CtrlCDeferred`), so a Ctrl-C stops the run without leaving the executor in a state that
    never exits.
    """

    def __init__(self, workers: int, threads: int, build_pipeline, preprocess_params: dict, max_image_pixels):
        self.workers = workers
        self.executor = ProcessPoolExecutor(  # starts no worker and no thread yet: submit does
            max_workers=workers,
            mp_context=_SpawnWithoutCtrlC(),
            initializer=_start_worker,
            initargs=(os.getpid(), threads, build_pipeline, preprocess_params, max_image_pixels),
        )

    def results(self, files: list[Path]):
        """Yields `(path, model_inputs)` per file in input order, where `model_inputs` is the list the pipeline's
        preprocess yields for that image, or the reason (str) it could not be read."""
        waiting = deque()
        queued = iter(files)
        with CtrlCDeferred():
            for path in queued:
                waiting.append((path, self.executor.submit(_preprocess_file, str(path))))
                if len(waiting) >= self.workers * IMAGES_AHEAD_PER_WORKER:
                    break
        while waiting:
            with CtrlCDeferred() as ctrl_c:  # not around the yield: the caller's own work stays interruptible
                path, future = waiting.popleft()
                while not wait([future], timeout=CTRL_C_POLL_S).done:
                    ctrl_c.raise_if_pressed()
                outcome = future.result()
                for next_path in queued:  # one more image handed out for the one taken
                    waiting.append((next_path, self.executor.submit(_preprocess_file, str(next_path))))
                    break
            yield path, outcome if isinstance(outcome, str) else [_from_worker(item) for item in outcome]

    def close(self) -> None:
        """Stops the workers: images not started are cancelled, the ones in progress finish (a fraction of a
        second each), then every worker has exited."""
        with CtrlCDeferred():
            self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def replay_preprocessed(model_inputs, **preprocess_params):
    """Stands in for the pipeline's `preprocess` when the workers did it: yields the model inputs they computed."""
    yield from model_inputs


class CtrlCDeferred:
    """Within the block, Ctrl-C in the main thread raises KeyboardInterrupt only where the code asks
    (`raise_if_pressed`) or when the block ends, not between any two bytecodes as Python does.

    Raised anywhere inside concurrent.futures, KeyboardInterrupt can leave a future's lock held, so that the
    executor's own thread waits on it forever and the run never exits (seen once in some tens of stopped runs), or
    leave a started worker the executor does not know of, which the exit then waits for. Only Python's own Ctrl-C
    handler is deferred: where SIGINT is ignored or handled otherwise, and off the main thread, nothing changes.
    """

    def __enter__(self):
        self.pressed = False
        self.deferring = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        if self.deferring:
            signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.pressed = True

    def raise_if_pressed(self) -> None:
        if self.pressed:
            self.pressed = False
            raise KeyboardInterrupt

    def __exit__(self, *exc_info) -> None:
        if self.deferring:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.raise_if_pressed()


class _SpawnWithoutCtrlCProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that starts with SIGINT blocked, as multiprocessing's own resource tracker starts.

    A worker spends its first seconds importing torch and the package, long before its initializer can ignore
    Ctrl-C; a Ctrl-C to the process group in those seconds would end it with a traceback. The signal mask is
    inherited through fork and exec, so the worker's copy stays pending until `_start_worker` discards it. Blocked,
    not ignored, in the main process: a Ctrl-C during the few milliseconds of a start still reaches it afterwards.
    """

    def start(self) -> None:
        if not _HAVE_SIGMASK:
            return super().start()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _CTRL_C)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class _SpawnWithoutCtrlC(multiprocessing.context.SpawnContext):
    Process = _SpawnWithoutCtrlCProcess


# ------------------------------------------------------------------------------------------ in a worker process

_worker: dict = {}


def _start_worker(parent_pid: int, threads: int, build_pipeline, preprocess_params: dict, max_image_pixels) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the main process decides
    if _HAVE_SIGMASK:  # blocked since the start (_SpawnWithoutCtrlCProcess); a pending Ctrl-C was just discarded
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CTRL_C)
    _die_with_parent(parent_pid)
    configure_threads(threads)
    logging.getLogger("modeling_qface").setLevel(logging.ERROR)  # the main process printed the model's notices
    with open(os.devnull, "w") as quiet:
        stderr, sys.stderr = sys.stderr, quiet  # loading bars and warnings, already shown by the main process
        try:
            pipe = build_pipeline()
        finally:
            sys.stderr = stderr
    _worker.update(pipe=pipe, params=preprocess_params, max_image_pixels=max_image_pixels)


def _preprocess_file(path: str):
    """The pipeline's model inputs for the image at `path` (arrays, so they pickle cheaply), or why it could not be
    read: the same exceptions, caught the same way, as the single-process loop of `qface analyze`."""
    try:
        image = load_image_rgb(path, max_pixels=_worker["max_image_pixels"])
    except (ImageLoadError, OSError) as error:
        return str(error)
    return [_to_main(item) for item in _worker["pipe"].preprocess(image, **_worker["params"])]


def _to_main(model_input: dict) -> dict:
    pixels = model_input["pixel_values"]
    # float32 holds every dtype a pipeline runs in (float16, bfloat16) exactly, and numpy has no bfloat16.
    return {**model_input, "pixel_values": pixels.float().numpy(), "dtype": str(pixels.dtype).removeprefix("torch.")}


def _from_worker(model_input: dict) -> dict:
    model_input = dict(model_input)
    dtype = getattr(torch, model_input.pop("dtype"))
    model_input["pixel_values"] = torch.from_numpy(np.asarray(model_input["pixel_values"])).to(dtype)
    return model_input


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends this worker SIGKILL when the process that started it dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # best effort: the executor still stops its workers at the end of a run
    if os.getppid() != parent_pid:  # the parent died before prctl took effect (the worker was handed to a reaper)
        os._exit(1)
