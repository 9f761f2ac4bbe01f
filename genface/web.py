"""`genface serve`: a Gradio app with one tab per job (identity check with forgery scores, video, makeup,
talking face, talking portrait).

The video tab offers ConsisID, Stand-In and VACE (on Wan), the talking-face tab MuseTalk and LatentSync 1.6 (with
a silence mode for both). Pipelines load on first use and stay loaded, one model per tab: a job of another model
of the tab unloads the tab's previous one first (two 14B video models do not fit one GPU together). The queue
runs one job at a time (``concurrency``) and holds at most ``max_queue`` waiting (more are told the app is busy).
It binds to 127.0.0.1 unless told otherwise. ``model="tiny"`` uses the tiny random models (offline, CPU; their
outputs and forgery scores are noise), for tests and to check an installation. Everything it generates carries
the synthetic-media marks.

What a user meets: each photo box shows the faces found in it, and a click on one chooses it (the CLI's
``--face-index``); every file is checked before any work and a mistake is said in the tab's status line in one
line (no server path, no traceback), the previous result cleared; numbers have the CLI's bounds and are refused,
never clamped or rounded; progress shows from the first second (model loading included); each tab has a Stop
button, and a second click on Run while the tab's job is waiting or running is ignored. Closing the page stops its
jobs and deletes its files: its outputs, and the uploads no open page may still show.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genface import arguments
from genface.arguments import Rule
from genface.errors import GenfaceError, InvalidArgumentError

TINY = "tiny"
#: The session name of jobs called outside the web app.
LOCAL = "local"
#: The one queue every tab's jobs share (its concurrency limit counts them all).
WORKER = "jobs"
#: The queue of the face previews shown when a photo is dropped (apart, so they never wait behind a job).
PREVIEWS = "faces"
#: The numbers the page takes: page label -> the rule the CLI and the pipelines check it with (genface.arguments). The
#: seed box is text, so that every seed the rule takes (up to 2**63 - 1, beyond a browser number's 2**53) is exact.
BOUNDS: dict[str, Rule] = {
    "Steps": arguments.STEPS,
    "Guidance": arguments.GUIDANCE,
    "Seed": arguments.SEED,
    "Face": arguments.FACE_INDEX,
    "Strength": arguments.STRENGTH,
    "Head motion": arguments.HEAD_MOTION,
    "Frames": arguments.VIDEO_FRAMES,
    "Frame rate": arguments.FPS,
    "Lip-sync guidance": arguments.LIP_SYNC_GUIDANCE,
    "Pitch factor": arguments.POSE_FACTOR,
    "Yaw factor": arguments.POSE_FACTOR,
    "Roll factor": arguments.POSE_FACTOR,
    "Voice activity": arguments.VOICE_ACTIVITY,
    "Fade in": arguments.FADE_FRAMES,
    "Fade out": arguments.FADE_FRAMES,
}
#: Frames the talking-face renderer makes per step (its progress bar counts these steps).
TALK_BATCH = 8
MAX_QUEUE = 16  # jobs that may wait; beyond that a user is told the app is busy
#: What each pipeline's progress bar counts, as the page shows it.
PROGRESS = {"video": "Denoising", "makeup": "Denoising", "talk": "Lip-syncing frames", "portrait": "Animating frames"}
#: What each tab's model is called while it loads.
MODELS = {"video": "video", "makeup": "makeup", "talk": "lip-sync", "portrait": "talking-portrait"}


@dataclass(frozen=True)
class Choice:
    """A model a tab offers: its label in the page, its name in ``load_pipeline`` (whose tiny random model is
    ``tiny-<name>``), and the Hub id of its weights where they are not that name's published ones."""

    label: str
    name: str
    weights: str | None = None


#: The models of the tabs that offer a choice: the value the page and its API take -> the model. The first is the
#: tab's default.
CHOICES: dict[str, dict[str, Choice]] = {
    "video": {
        "consisid": Choice("ConsisID", "consisid"),
        "stand-in": Choice("Stand-In (Wan2.1-14B)", "stand-in"),
        "vace": Choice("VACE 14B", "vace"),
        "vace-1.3b": Choice("VACE 1.3B", "vace", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"),  # vace.SMALL_MODEL
    },
    "talk": {"musetalk": Choice("MuseTalk", "musetalk"), "latentsync": Choice("LatentSync 1.6", "latentsync")},
}
#: ConsisID's frame rate (its videos', and the CLI's default); the Wan models' is wan.FPS (16).
CONSISID_FPS = 8.0
#: What each silence mode of the dubbing models does in the speech's pauses (pipelines/talking_face/dubbing.py).
SILENCE = {
    "animate": "the mouth follows the speech (as published)",
    "source": "the source frame is kept (a still mouth)",
    "closed": "the mouth the model draws for silence (closed)",
}
#: The head's angles, as Ditto names its pose factors (alpha_pitch, ...).
AXES = ("pitch", "yaw", "roll")
#: What the talking portrait's fades go to (Ditto's fade_type): "default" passes none (the configuration's holds).
FADE_TYPES = {
    "default": "the model's configuration's (none without one)",
    "d0": "the first frame's motion",
    "s": "the photo's",
}
#: Heights in pixels of the result players and images (whatever the size of the result), and of paired inputs.
RESULT_HEIGHT, INPUT_HEIGHT = 360, 240
#: A face in a gallery: its side in pixels, the crop around its box (in box sizes), the gap between faces in
#: pixels, and how many faces make a row.
FACE_THUMB, FACE_MARGIN, FACE_GAP, FACES_PER_ROW = 96, 1.6, 8, 6
#: Colours of the boxes drawn on faces: the chosen one, the others, and the keypoints.
CHOSEN, OTHER, KEYPOINT = (255, 200, 0), (0, 220, 0), (255, 60, 60)
#: Seconds a file's time may lag time.time() (the kernel stamps files with a coarse clock).
CLOCK_SLACK = 1.0
#: Closed sessions remembered, so a job of a closed page that was still queued does no work.
ENDED_REMEMBERED = 4096
STOPPED = "**Stopped.** Nothing was written."

logger = logging.getLogger(__name__)


class Stopped(GenfaceError):
    """The job was stopped: its tab's Stop button was pressed, or its page was closed."""


def draw_faces(image: np.ndarray, faces: list[Any], chosen: int | None = None) -> np.ndarray:
    """The image with each face's box, its index and its five keypoints drawn on it; the ``chosen`` face's box in
    its own colour."""
    import cv2

    out = image.copy()
    scale = max(1, round(max(image.shape[:2]) / 400))
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        colour = CHOSEN if index == chosen else OTHER
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2 * scale)
        cv2.putText(out, str(index), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, scale)
        for x, y in face.kps:
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * scale, KEYPOINT, -1)
    return out


def face_thumbnail(image: np.ndarray, face: Any) -> np.ndarray:
    """A square crop around ``face`` (:data:`FACE_MARGIN` box sizes, edges repeated), :data:`FACE_THUMB` pixels."""
    import cv2

    x1, y1, x2, y2 = face.bbox
    side = FACE_MARGIN * max(x2 - x1, y2 - y1)
    scale = FACE_THUMB / side
    matrix = np.array([[scale, 0, FACE_THUMB / 2 - scale * (x1 + x2) / 2],
                       [0, scale, FACE_THUMB / 2 - scale * (y1 + y2) / 2]])  # fmt: skip
    return cv2.warpAffine(
        image, matrix, (FACE_THUMB, FACE_THUMB), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )


def face_gallery(thumbs: list[np.ndarray], chosen: int | None = None) -> np.ndarray:
    """The faces' thumbnails in rows of :data:`FACES_PER_ROW` on white, each with its number, the ``chosen`` one
    framed in its colour (see :func:`face_at`)."""
    import cv2

    cell = FACE_THUMB + FACE_GAP
    rows, columns = -(-len(thumbs) // FACES_PER_ROW), min(len(thumbs), FACES_PER_ROW)
    out = np.full((rows * cell + FACE_GAP, columns * cell + FACE_GAP, 3), 255, np.uint8)
    for index, thumb in enumerate(thumbs):
        y, x = FACE_GAP + index // FACES_PER_ROW * cell, FACE_GAP + index % FACES_PER_ROW * cell
        out[y : y + FACE_THUMB, x : x + FACE_THUMB] = thumb
        if index == chosen:
            edge = FACE_GAP // 2
            cv2.rectangle(
                out, (x - edge, y - edge), (x + FACE_THUMB + edge - 1, y + FACE_THUMB + edge - 1), CHOSEN, edge
            )
        cv2.rectangle(out, (x, y + FACE_THUMB - 18), (x + 9 + 9 * len(str(index)), y + FACE_THUMB), (0, 0, 0), -1)
        cv2.putText(out, str(index), (x + 4, y + FACE_THUMB - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return out


def face_at(x: float, y: float, count: int) -> int | None:
    """The face at pixel (``x``, ``y``) of the gallery of ``count`` faces (:func:`face_gallery`), or None."""
    cell = FACE_THUMB + FACE_GAP
    column, row = int((x - FACE_GAP / 2) // cell), int((y - FACE_GAP / 2) // cell)
    index = row * FACES_PER_ROW + column
    return index if 0 <= column < FACES_PER_ROW and 0 <= row and index < count else None


def _span(name: str) -> str:
    """``BOUNDS[name]`` in words."""
    low, high = BOUNDS[name].low, BOUNDS[name].high
    return f"from {int(low):,} to {int(high):,}" if BOUNDS[name].kind is int else f"from {low:g} to {high:g}"


def _form(name: str) -> str:
    """``BOUNDS[name]``'s form in words (``4k+1``); empty for a number of any form."""
    rule = BOUNDS[name]
    return f"{rule.every}k+{rule.plus}" if rule.every > 1 else ""


def bounded(value: Any, name: str) -> Any:
    """``value`` (a number, or text from the page) as an int or a float within ``BOUNDS[name]`` (and of its form,
    such as 4k+1 frames), or an InvalidArgumentError saying why not: nothing is clamped or rounded."""
    rule = BOUNDS[name]
    whole, low, high = rule.kind is int, rule.low, rule.high
    kind, span = "a whole number" if whole else "a number", _span(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidArgumentError(f"{name} is empty; give {kind} {span}.")
    refusal = InvalidArgumentError(f"{name} must be {kind} {span}, got {value!r}.")
    if isinstance(value, bool):
        raise refusal
    if isinstance(value, int) or (whole and isinstance(value, str) and _INTEGER.fullmatch(value)):
        number: int | float = int(value)  # exact however large
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise refusal from None
        if not math.isfinite(number) or (whole and not (number.is_integer() and abs(number) <= 2**53)):
            raise refusal  # a fraction, or a whole number too large for a float to hold exactly
        number = int(number) if whole else number
    if not low <= number <= high:
        raise refusal
    every, plus = rule.every, rule.plus
    if every > 1 and (number - plus) % every:
        below = number - (number - plus) % every
        raise InvalidArgumentError(
            f"{name} must be of the form {_form(name)}, got {number}; try {below} or {below + every}."
        )
    return number


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
#: An absolute path (two folders deep at least), not inside a word: its last part is kept.
_PATH = re.compile(r"(?<![\w.~])(?:/[^/\s'\"]+)+/([^/\s'\"]+)")


def public(text: object) -> str:
    """One line a page may show: the first line of ``text``, paths shortened to their file names, errno codes
    removed."""
    lines = str(text).strip().splitlines()
    return _PATH.sub(r"\1", _ERRNO.sub("", lines[0] if lines else "")).strip()


def _name(path: str) -> str:
    return Path(path).name


@dataclass
class _Session:
    """What the app knows of one browser page (or API client)."""

    #: time.time() when it opened: an upload newer than this may still be shown in its page (-inf: any upload).
    opened: float = -math.inf
    #: Uploads its jobs have read (it may run them again).
    used: set[Path] = field(default_factory=set)
    #: tab -> time.monotonic() of its Stop button's last press, and of the end of its last job.
    stops: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    #: Tabs with a job running now.
    running: set[str] = field(default_factory=set)
    ended: bool = False


@dataclass
class Run:
    """One job of a tab: its session, when it was queued, how it shows progress and whether it must stop."""

    session: str = LOCAL
    tab: str = ""
    queued: float = field(default_factory=time.monotonic)
    progress: Callable[..., Any] | None = None
    state: _Session = field(default_factory=_Session)

    def stopped(self) -> bool:
        """Whether the page closed or the tab's Stop was pressed after this job was queued."""
        return self.state.ended or self.state.stops.get(self.tab, -math.inf) > self.queued

    def check(self) -> None:
        """Raise :class:`Stopped` when the job must stop."""
        if self.stopped():
            raise Stopped("Stopped.")

    def phase(self, desc: str) -> None:
        """Show ``desc`` (a stage without a bar of its own, such as loading a model), after checking for a stop."""
        self.check()
        if self.progress is not None:
            self.progress(0, desc=desc)

    def step(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        """The pipelines' ``callback_on_step_end``: stop between steps (or batches of frames) when asked."""
        self.check()
        return {}


class Jobs:
    """The work behind each tab, with the pipelines loaded once and each session's files kept apart.

    Outputs go to ``output_dir/<session>/``. Uploads (under ``upload_dir``, the web app's) may be shared by pages
    (the same file dropped in two pages is stored once), so one is deleted when a session ends only if no open
    session has used it and none opened before it was uploaded (it may show it); sessions say they opened with
    :meth:`open_session`.
    """

    def __init__(
        self,
        model: str = "hub",
        device: str | None = None,
        output_dir: str | Path | None = None,
        upload_dir: str | Path | None = None,
    ) -> None:
        self.model, self.device = model, device
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="genface-serve-")).resolve()
        self.upload_dir = None if upload_dir is None else Path(upload_dir).resolve()
        self._pipes: dict[str, Any] = {}
        self._loaded: dict[str, str | None] = {}  # tab -> load_pipeline's name of its pipeline
        self._locks = {job: threading.Lock() for job in MODELS}
        self._analyzers: dict[str, Any] = {}
        self._forgery: tuple[Any, str] | None = None
        self._sessions: dict[str, _Session] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # -- sessions ----------------------------------------------------------------------------------------------

    def open_session(self, session: str, opened: float | None = None) -> None:
        """Record that ``session``'s page opened at ``opened`` (time.time(); default now): the uploads it shows
        are newer."""
        with self._lock:
            if session not in self._ended:
                self._sessions.setdefault(session, _Session(opened=time.time() if opened is None else opened))

    def _session(self, session: str) -> _Session:
        """The session's record (called with the lock held); a closed session's is marked ended and not kept."""
        if session in self._ended:
            return _Session(ended=True)
        return self._sessions.setdefault(session, _Session())

    def start(
        self,
        session: str,
        tab: str,
        files: Iterable[str] = (),
        queued: float | None = None,
        progress: Callable[..., Any] | None = None,
    ) -> Run | None:
        """A job of ``tab`` queued at ``queued`` (time.monotonic) in ``session``, reading ``files``; None when the
        tab already has a job running or one that ended after this one was queued (a second click)."""
        queued = time.monotonic() if queued is None else queued
        with self._lock:
            state = self._session(session)
            if tab in state.running or queued < state.finished.get(tab, -math.inf):
                return None
            state.running.add(tab)
            if self.upload_dir is not None:
                paths = {Path(f).resolve() for f in files if f}
                state.used.update(p for p in paths if p.is_relative_to(self.upload_dir))
        return Run(session, tab, queued, progress, state)

    def finish(self, run: Run) -> None:
        """The job ``run`` ended; a closed session's files it wrote are deleted."""
        with self._lock:
            run.state.running.discard(run.tab)
            run.state.finished[run.tab] = time.monotonic()
        if run.state.ended:
            shutil.rmtree(self.output_dir / run.session, ignore_errors=True)

    def stop(self, session: str, tab: str) -> None:
        """Stop ``tab``'s job of ``session``, running or queued (at its next step; one queued later runs)."""
        with self._lock:
            self._session(session).stops[tab] = time.monotonic()

    def end_session(self, session: str) -> None:
        """The session's page closed: stop its jobs, delete its outputs and the uploads no open page may show."""
        with self._lock:
            state = self._sessions.pop(session, None) or _Session()
            state.ended = True
            self._ended[session] = None
            while len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
            held = set().union(*(s.used for s in self._sessions.values()))
            oldest = min((s.opened for s in self._sessions.values()), default=math.inf)
        shutil.rmtree(self.output_dir / session, ignore_errors=True)
        if self.upload_dir is None:
            return
        for folder, subfolders, files in os.walk(self.upload_dir):  # folders that vanish meanwhile are skipped
            subfolders[:] = [name for name in subfolders if Path(folder, name) != self.output_dir]
            for path in (Path(folder, name) for name in files):
                with contextlib.suppress(OSError):  # gone already, or its folder not empty
                    if path not in held and path.stat().st_mtime < oldest - CLOCK_SLACK:
                        path.unlink()
                        if path.parent != self.upload_dir:  # gradio keeps each upload in a folder of its own
                            path.parent.rmdir()

    # -- models ------------------------------------------------------------------------------------------------

    def _device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _model(self, job: str, choice: str | None = None) -> tuple[str | None, str]:
        """``load_pipeline``'s name of the tab's model ``choice`` (:data:`CHOICES`; None for a tab without one): its
        tiny random model for the tiny app, else its published weights; and what the page calls it."""
        if choice is None:
            return (TINY if self.model == TINY else None), MODELS[job]
        models = CHOICES[job]
        if choice not in models:
            raise InvalidArgumentError(f"Model must be one of {', '.join(models)}, got {choice!r}.")
        model = models[choice]
        name = f"{TINY}-{model.name}" if self.model == TINY else model.weights or model.name
        return name, f"{model.label} {MODELS[job]}"

    def _pipe(self, job: str, run: Run) -> Any:
        """The pipeline of a tab without a model choice, loaded on first use and kept."""
        with self._pipeline(job, run, self._model(job)) as pipe:
            return pipe

    @contextlib.contextmanager
    def _pipeline(self, job: str, run: Run, model: tuple[str | None, str]) -> Iterator[Any]:
        """The tab's pipeline of ``model`` (:meth:`_model`), loaded on first use and kept. A job of another model
        unloads the tab's pipeline first, so a tab holds one model at a time; the tab's jobs that hold it (the
        lock) use it one at a time, so none is unloaded under a running job. A job waiting for it can be stopped."""
        name, what = model
        lock = self._locks[job]
        if not lock.acquire(blocking=False):
            run.phase(f"Waiting for another {MODELS[job]} job to end")
            while not lock.acquire(timeout=0.25):
                run.check()
        try:
            if job in self._pipes and self._loaded[job] != name:
                run.phase(f"Unloading the {MODELS[job]} model used last")
                self._unload(job)
            if job not in self._pipes:
                from genface.pipelines import load_pipeline

                run.phase(f"Loading the {what} model")
                pipe = load_pipeline(job, name)  # None: the task's published weights
                pipe.set_progress_bar_config(desc=PROGRESS[job])  # the page shows the pipeline's bar
                self._pipes[job], self._loaded[job] = pipe.to(self._device()), name
            run.phase(f"Preparing the {what} job")
            yield self._pipes[job]
        finally:
            lock.release()

    def _unload(self, job: str) -> None:
        """Drop the tab's pipeline (the only reference to it once the tab's jobs have ended), its memory given back."""
        import gc

        import torch

        del self._pipes[job], self._loaded[job]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _analyzer(self, use: str, run: Run | None = None) -> Any:
        """A face analyzer for ``use`` ("identity" jobs or gallery "previews", which run at the same time)."""
        if use not in self._analyzers:
            from genface.identity import FaceAnalyzer

            if run is not None:
                run.phase("Loading the face models (first run only)")
            self._analyzers[use] = FaceAnalyzer("auto")
        return self._analyzers[use]

    def _detector(self) -> tuple[Any, str]:
        """The forgery detector and its name in the report, or None and one line saying why there is none. Made
        on first use (a tiny random FSFM for the tiny model, else the published deepfake checkpoint, tried once)."""
        if self._forgery is None:
            from genface.forensics import ForgeryDetector, load_detector, tiny_fsfm

            if self.model == TINY:
                self._forgery = (
                    ForgeryDetector(tiny_fsfm(), device=self._device()),
                    "tiny random FSFM: its score is noise",
                )
            else:
                detector, unavailable = load_detector(device=self._device())
                self._forgery = detector, unavailable or "FSFM deepfake"
        return self._forgery

    def _forgery_lines(self, images: list[np.ndarray], run: Run) -> list[str]:
        """Each photo's forgery score worded as `genface verify` words it, or one line saying there is none."""
        from genface.forensics import FORGERY_CAUTION, score_line, score_report

        if self._forgery is None:
            run.phase("Loading the forgery detector (first run only)")
        detector, name = self._detector()
        if detector is None:
            return [f"{name[0].upper()}{name[1:]}"]
        run.phase("Scoring forgery")
        reports = [score_report(detector, image, name) for image in images]
        lines = [f"{photo} photo: {score_line(r)}" for photo, r in zip(("Reference", "Compared"), reports, strict=True)]
        return [*lines, f"*Each score is {FORGERY_CAUTION}.*"]

    # -- files -------------------------------------------------------------------------------------------------

    def _out(self, session: str, name: str) -> Path:
        folder = self.output_dir / session
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder)) / name

    @staticmethod
    def _checked(path: str, label: str, load: Callable[[str], Any]) -> Any:
        """``load(path)``, or a one-line GenfaceError naming the box (``label``) and the file, without its folder."""
        if not Path(path).is_file():
            raise GenfaceError(f"{label} {_name(path)} is no longer on the server; upload it again.")
        try:
            return load(path)
        except GenfaceError as exc:
            raise GenfaceError(f"{label}: {public(exc)}") from None

    def _photo(self, path: str, label: str) -> np.ndarray:
        from genface.media import load_image

        return self._checked(path, label, load_image)

    def _speech(self, path: str) -> None:
        from genface.media import load_audio

        self._checked(path, "Speech", load_audio)

    def _first_frame(self, path: str, label: str) -> np.ndarray:
        from genface.media import read_video

        return self._checked(path, label, lambda p: read_video(p, max_frames=1)[0][0])

    # -- the tabs ----------------------------------------------------------------------------------------------

    def faces(self, photo: str | None, label: str, *, video: bool = False) -> tuple[list[np.ndarray], str]:
        """The faces found in a dropped photo (or a video's first frame), largest first, as thumbnails, and one
        line saying what was found."""
        if not photo:
            return [], ""
        image = self._first_frame(photo, label) if video else self._photo(photo, label)
        faces = self._analyzer("previews").detect(image)
        where = f"{'the first frame of ' if video else ''}{_name(photo)}"
        if not faces:
            return [], f"No face found in {where}; use a photo where one face is clearly visible."
        found = f"{len(faces)} faces found in {where}: face 0 (the largest) is used; click a face to choose another."
        return [face_thumbnail(image, face) for face in faces], found if len(faces) > 1 else f"1 face found in {where}."

    def gallery(self, thumbs: list[np.ndarray], chosen: Any, session: str = LOCAL) -> str | None:
        """The gallery of ``thumbs`` with face ``chosen`` framed (none when it is not one of them), as a PNG file
        of the session; None for no face, or a session already closed."""
        from genface.media import save_image

        if not thumbs or session in self._ended:
            return None
        try:
            index = bounded(chosen, "Face")
        except InvalidArgumentError:
            index = None
        return str(save_image(face_gallery(thumbs, index), self._out(session, "faces.png")))

    def identity(
        self,
        reference: str | None,
        reference_face: Any = 0,
        target: str | None = None,
        target_face: Any = 0,
        *,
        run: Run | None = None,
    ) -> tuple[str, str, str]:
        """Faces found in both photos (drawn, the chosen ones marked, as PNG files), the FaceSim of the chosen face
        of the target to the chosen face of the reference, and each photo's forgery score."""
        from genface.identity.detect import choose_face
        from genface.media import save_image

        run = run or Run()
        if not reference or not target:
            raise GenfaceError("Give two photos: a reference face and a face to compare with it.")
        images = [self._photo(reference, "Reference face"), self._photo(target, "Face to compare")]
        chosen = [bounded(reference_face, "Face"), bounded(target_face, "Face")]
        analyzer = self._analyzer("identity", run)
        run.phase("Finding faces")
        faces = [analyzer.detect(image) for image in images]
        drawn = [
            str(save_image(draw_faces(image, found, index), self._out(run.session, f"faces_{i}.png")))
            for i, (image, found, index) in enumerate(zip(images, faces, chosen, strict=True))
        ]
        limit = analyzer.min_face_size
        face = choose_face(faces[0], chosen[0], min_face_size=limit, what="the reference photo")
        if not faces[1]:
            text = "No face found in the second photo."
        else:
            other = choose_face(faces[1], chosen[1], min_face_size=limit, what="the photo to compare")
            score = float(analyzer.embed(images[1], other) @ analyzer.embed(images[0], face))
            recognizer = analyzer.recognizer
            verdict = "same person" if score >= recognizer.match_threshold else "different people"
            text = f"FaceSim {score:.3f} ({recognizer.name}; {verdict} by its threshold {recognizer.match_threshold:g})"
        return drawn[0], drawn[1], "\n\n".join([text, *self._forgery_lines(images, run)])

    def video_settings(self, model: str) -> tuple[float, int, float, str]:
        """What the video tab sets when ``model`` (:data:`CHOICES`) is chosen: its call's guidance, its frames (its
        tiny model's for the tiny app), its frame rate (ConsisID's 8 fps, Wan's 16) and its negative prompt (Wan's
        recommended one; none for ConsisID), as the command line's defaults (genface.pipelines.call_defaults)."""
        from genface.pipelines import call_defaults

        defaults = call_defaults("video", self._model("video", model)[0])
        negative = defaults.get("negative_prompt") or ""
        return defaults["guidance_scale"], defaults["num_frames"], float(defaults["fps"]), negative

    def video(
        self,
        face: str | None,
        face_index: Any = 0,
        prompt: str = "",
        steps: Any = 50,
        guidance: Any = 6.0,
        seed: Any = 42,
        model: str = "consisid",
        negative_prompt: str = "",
        frames: Any = 49,
        fps: Any = CONSISID_FPS,
        *,
        run: Run | None = None,
    ) -> tuple[str, str]:
        """An identity-preserving video of the chosen face in ``face`` by ``model`` (:data:`CHOICES`; the defaults
        are ConsisID's, :meth:`video_settings` gives each model's) at its size, and its numbers as the CLI prints
        them."""
        import torch

        from genface.identity import face_similarity
        from genface.media import to_uint8
        from genface.pipelines import default_size
        from genface.provenance import write_marked_video

        run = run or Run()
        if not face:
            raise GenfaceError("Give a face photo.")
        self._photo(face, "Face photo")
        chosen = self._model("video", model)
        face_index, steps = bounded(face_index, "Face"), bounded(steps, "Steps")
        guidance, seed = bounded(guidance, "Guidance"), bounded(seed, "Seed")
        size = {**default_size("video", chosen[0]), "num_frames": bounded(frames, "Frames")}
        fps = bounded(fps, "Frame rate")
        with self._pipeline("video", run, chosen) as pipe:
            output = pipe(
                prompt or "", negative_prompt=negative_prompt or None, face_image=face, face_index=face_index,
                num_inference_steps=steps, guidance_scale=guidance, output_type="np",
                generator=torch.Generator().manual_seed(seed), callback_on_step_end=run.step, **size,
            )  # fmt: skip
            run.phase("Writing the video")
            video = to_uint8(output.frames[0])
            path = write_marked_video(
                self._out(run.session, "video.mp4"), video, fps, "identity_video", chosen[0], seed=seed
            )
            lines = [f"{len(video)} frames, {video.shape[2]}x{video.shape[1]} at {fps:g} fps; seed {seed}"]
            encoder = pipe.identity_encoder
            recognizer = encoder.analyzer.recognizer if encoder is not None else None
            if recognizer is not None and output.identity.recognition_model == recognizer.name:
                sim = getattr(output, "facesim", None)  # the Wan pipelines measure it; ConsisID's does not
                if sim is None:
                    run.phase("Measuring FaceSim")
                    sim = face_similarity(output.identity, video, analyzer=encoder.analyzer)
                found = int(sim.found.sum())
                lines.append(
                    f"FaceSim vs reference ({sim.model}): mean {sim.mean:.4f}, min {sim.min:.4f} over {found} "
                    "frame(s) with a face"
                    if found
                    else "FaceSim: no face found in the generated frames"
                )
        return str(path), "\n\n".join(lines)

    def makeup(
        self,
        face: str | None,
        face_index: Any = 0,
        reference: str | None = None,
        strength: Any = 1.0,
        steps: Any = 25,
        guidance: Any = 2.5,
        seed: Any = 42,
        *,
        run: Run | None = None,
    ) -> tuple[str, str]:
        """The chosen face in ``face`` wearing the makeup of ``reference``, and the numbers the CLI prints."""
        import torch

        from genface.pipelines import default_size
        from genface.provenance import save_marked_image

        run = run or Run()
        if not face or not reference:
            raise GenfaceError("Give a face photo and a makeup reference photo.")
        self._photo(face, "Face photo")
        self._photo(reference, "Makeup reference")
        face_index, strength = bounded(face_index, "Face"), bounded(strength, "Strength")
        steps, guidance, seed = bounded(steps, "Steps"), bounded(guidance, "Guidance"), bounded(seed, "Seed")
        output = self._pipe("makeup", run)(
            face, reference, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
            face_index=face_index, output_type="np", generator=torch.Generator().manual_seed(seed),
            callback_on_step_end=run.step, **default_size("makeup", self.model),
        )  # fmt: skip
        run.phase("Writing the image")
        image = output.images[0]  # uint8 already: the edited crop pasted back into the photo
        path = save_marked_image(self._out(run.session, "makeup.png"), image, "makeup", self.model, seed=seed)
        lines = [
            f"seed {seed}",
            "FaceSim source vs result: no face found in the result"
            if output.facesim is None
            else f"FaceSim source vs result: {output.facesim:.4f}",
        ]
        lines += [f"makeup similarity, {region}: {score:.3f}" for region, score in output.makeup_similarity.items()]
        return str(path), "\n\n".join(lines)

    def talk(
        self,
        photo: str | None,
        video: str | None = None,
        face_index: Any = 0,
        audio: str | None = None,
        model: str = "musetalk",
        silence: str = "animate",
        steps: Any = 20,
        guidance: Any = 1.5,
        seed: Any = 1247,
        *,
        run: Run | None = None,
    ) -> tuple[str, str]:
        """The chosen face in ``photo`` or ``video`` (one of them) speaking ``audio``, dubbed by ``model``
        (:data:`CHOICES`) with the ``silence`` mode (:data:`SILENCE`), and the numbers the CLI prints. ``steps``,
        ``guidance`` and ``seed`` are LatentSync's (their defaults: its script's); MuseTalk has none."""
        import torch

        run = run or Run()
        if bool(photo) == bool(video) or not audio:
            raise GenfaceError("Give a face (a photo or a video, not both) and a speech recording.")
        if photo:
            self._photo(photo, "Face photo")
        else:
            self._first_frame(video, "Face video")
        self._speech(audio)
        face_index, chosen = bounded(face_index, "Face"), self._model("talk", model)
        if silence not in SILENCE:
            raise InvalidArgumentError(f"Silence must be one of {', '.join(SILENCE)}, got {silence!r}.")
        sampling: dict[str, Any] = {"batch_size": TALK_BATCH}
        seeded = ""
        if model == "latentsync":
            seed = bounded(seed, "Seed")
            sampling = {"num_inference_steps": bounded(steps, "Steps"),
                        "guidance_scale": bounded(guidance, "Lip-sync guidance"),
                        "generator": torch.Generator().manual_seed(seed)}  # fmt: skip
            seeded = f"; seed {seed}"
        with self._pipeline("talk", run, chosen) as pipe:
            output = pipe(
                photo or video, audio, face_index=face_index, silence=silence, **sampling,
                output_path=self._out(run.session, "talk.mp4"), callback_on_step_end=run.step,
            )  # fmt: skip
        lines = [f"{len(output.pitch)} frames at {output.fps:g} fps{seeded}"]
        if output.lost_frames:
            lines.append(f"face not found in {len(output.lost_frames)} source frame(s); the nearest box was held there")
        return str(output.path), "\n\n".join(lines + _spoken_scores(output, "source"))

    def portrait(
        self,
        photo: str | None,
        face_index: Any = 0,
        audio: str | None = None,
        emotion: str = "neutral",
        head_motion: Any = 1.0,
        seed: Any = 42,
        alpha_pitch: Any = 1.0,
        alpha_yaw: Any = 1.0,
        alpha_roll: Any = 1.0,
        vad_alpha: Any = 1.0,
        fade_in: Any = -1,
        fade_out: Any = -1,
        fade_type: str = "default",
        motion_clamp: Any = True,
        *,
        run: Run | None = None,
    ) -> tuple[str, str]:
        """The chosen face in ``photo`` speaking ``audio``, with head motion, blinks and the chosen emotion, and
        the numbers the CLI prints. Ditto's controls (pose factors, ``vad_alpha``, fades, the motion clamp) left at
        their defaults are not passed, so the pipeline's and its configuration's hold."""
        import torch

        from genface.models.motion.lmdm import EMOTIONS

        run = run or Run()
        if not photo or not audio:
            raise GenfaceError("Give a face photo and a speech recording.")
        if emotion not in EMOTIONS:
            raise InvalidArgumentError(f"Emotion must be one of {', '.join(EMOTIONS)}, got {emotion!r}.")
        if fade_type not in FADE_TYPES:
            raise InvalidArgumentError(f"Fade type must be one of {', '.join(FADE_TYPES)}, got {fade_type!r}.")
        if not isinstance(motion_clamp, bool):
            raise InvalidArgumentError(f"Motion clamp must be on or off, got {motion_clamp!r}.")
        self._photo(photo, "Face photo")
        self._speech(audio)
        face_index, head_motion = bounded(face_index, "Face"), bounded(head_motion, "Head motion")
        seed = bounded(seed, "Seed")
        factors = dict(zip(AXES, (alpha_pitch, alpha_yaw, alpha_roll), strict=True))
        ditto = {f"alpha_{axis}": bounded(value, f"{axis.title()} factor") for axis, value in factors.items()}
        ditto["vad_alpha"] = bounded(vad_alpha, "Voice activity")
        ditto = {name: value for name, value in ditto.items() if value != 1}  # 1 keeps the default: not passed
        fades = {"fade_in": bounded(fade_in, "Fade in"), "fade_out": bounded(fade_out, "Fade out")}
        ditto.update({name: value for name, value in fades.items() if value != -1})
        if fade_type != "default":
            ditto["fade_type"] = fade_type
        if not motion_clamp:
            ditto["v_min_max_for_clip"] = False
        output = self._pipe("portrait", run)(
            photo, audio, emotion=emotion, head_motion=head_motion, generator=torch.Generator().manual_seed(seed),
            face_index=face_index, output_path=self._out(run.session, "portrait.mp4"), callback_on_step_end=run.step,
            **ditto,
        )  # fmt: skip
        spread = output.head_pose.std(axis=0)
        lines = [
            f"{len(output.head_pose)} frames at {output.fps:g} fps; seed {seed}",
            "head motion (std, degrees): "
            + ", ".join(f"{a} {v:.3f}" for a, v in zip(("pitch", "yaw", "roll"), spread, strict=True)),
        ]
        if output.blinks is not None:
            lines.append(f"blinks seen: {output.blinks}")
        return str(output.path), "\n\n".join(lines + _spoken_scores(output, "photo"))


def _spoken_scores(output: Any, reference: str) -> list[str]:
    """FaceSim to the ``reference`` and the lip-sync proxy of a talking face or portrait, as the CLI prints them,
    or a line saying why one is missing."""
    lines = []
    if output.facesim is not None and output.facesim.found.any():
        lines.append(f"FaceSim vs {reference} ({output.facesim.model}): mean {output.facesim.mean:.4f}")
    else:
        lines.append("FaceSim: no face found in the result")
    if output.lip_sync is not None and math.isfinite(output.lip_sync):
        lines.append(f"lip-sync proxy (mouth opening vs loudness, Pearson r): {output.lip_sync:.3f}")
    else:
        lines.append("lip-sync proxy: not measurable (the mouth was not found, or it or the loudness never changed)")
    return lines


def _release_memory() -> None:
    """Hand the freed heap back to the system (glibc's malloc_trim), so that a server's resident memory returns
    to its baseline after a burst of jobs."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _enqueued_at() -> float | None:
    """When Gradio queued the event being handled (time.monotonic), or None outside its queue."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    event = queue.event_ids_to_events.get(event_id) if queue is not None and event_id else None
    return getattr(event, "enqueue_time", None)


def _path(value: Any) -> Any:
    """A file box's value (Gradio's file data, unprocessed) as its path on the server; other values as they are."""
    return value.get("path") if isinstance(value, dict) else value


def _said(exc: Exception, what: str) -> str:
    """The tab's status line for an error of ``what`` (a job, a preview): a mistake (GenfaceError) logged in one
    line; ffmpeg's failure too (an encoder refusing the speech's sample rate, say); anything else logged with its
    traceback for the operator. One line in the page, in any case."""
    import av

    if isinstance(exc, GenfaceError):
        logger.warning("%s refused: %s", what, public(exc))
        return f"**Error:** {public(exc)}"
    if isinstance(exc, av.FFmpegError):
        logger.warning("%s failed in ffmpeg: %s", what, public(exc))
        reason = exc.strerror or public(exc)
        return f"**Error:** ffmpeg could not encode or decode the media ({reason}); nothing was written."
    logger.exception("%s failed", what)
    return (
        f"**Error:** Unexpected error on the server ({type(exc).__name__}); the job did not finish. Please report it."
    )


def _signature(function: Callable[..., Any], extra: list[inspect.Parameter]) -> inspect.Signature:
    """``function``'s parameters but its keyword-only ones, then ``extra``: what Gradio reads to pass values."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    named = [p.name for p in inspect.signature(function).parameters.values() if p.kind is not p.KEYWORD_ONLY]
    return inspect.Signature([inspect.Parameter(name, keyword) for name in named] + extra)


def _web_job(jobs: Jobs, function: Callable[..., tuple], outputs: int) -> Callable[..., tuple]:
    """``function`` as a Gradio event handler taking Gradio's unprocessed values: run in the caller's session with
    its progress shown from the start (the pipelines' tqdm bars), stopped by the tab's Stop or the page's close,
    ignored when the tab already has a job waiting or running (a second click); a mistake (GenfaceError) logged
    in one line and said in the tab's status line (its last output) in one line, the other outputs cleared."""
    import gradio as gr

    tab = function.__name__

    def run(*args: Any) -> tuple:
        *values, request, progress = args
        values = [_path(value) for value in values]
        job = jobs.start(request.session_hash, tab, [v for v in values if isinstance(v, str)], _enqueued_at(), progress)
        if job is None:
            logger.info("%s job ignored: one is already waiting or running in its tab", tab)
            return tuple(gr.skip() for _ in range(outputs))
        try:
            job.phase("Starting")
            return function(*values, run=job)
        except Exception as exc:  # noqa: BLE001 - said in one line in the tab, logged for the operator
            if not (isinstance(exc, Stopped) or job.stopped()):  # else a failure its stop caused (a file deleted)
                return (*[None] * (outputs - 1), _said(exc, f"{tab} job"))
            logger.info("%s job stopped%s", tab, ": its page was closed" if job.state.ended else "")
            return (*[None] * (outputs - 1), STOPPED)
        finally:
            jobs.finish(job)
            _release_memory()

    run.__signature__ = _signature(  # type: ignore[attr-defined]
        function,
        [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request),
            inspect.Parameter(
                "progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress(track_tqdm=True)
            ),
        ],
    )
    run.__annotations__ = {"request": gr.Request}  # how Gradio finds where to pass the request
    run.__name__ = tab
    return run


def _web_faces(jobs: Jobs, label: str, clears: int, *, video: bool = False) -> Callable[..., tuple]:
    """The faces in a dropped photo (or video) as a Gradio event handler: the gallery (face 0 framed), its
    thumbnails (kept in the page's state), the face chosen (0), the tab's status line, and ``clears`` results
    cleared; a file that is not what the box takes is refused in the status line in one line."""

    def faces(value: Any, request: Any) -> tuple:
        try:
            thumbs, line = jobs.faces(_path(value), label, video=video)
        except Exception as exc:  # noqa: BLE001 - said in one line in the tab, logged for the operator
            thumbs, line = [], _said(exc, "face preview")
        return jobs.gallery(thumbs, 0, request.session_hash), thumbs, 0, line, *[None] * clears

    return _with_request(faces)


def _with_request(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its ``request`` parameter annotated as gr.Request, which is how Gradio finds where to pass
    the request (this module's annotations are strings)."""
    import gradio as gr

    function.__annotations__["request"] = gr.Request
    return function


def _clicked(thumbs: list[np.ndarray] | None, event: Any) -> Any:
    """The number of the face clicked in a gallery (unchanged for a click between faces)."""
    import gradio as gr

    index = face_at(*event.index, len(thumbs or [])) if event.index else None
    return gr.skip() if index is None else index


def build_app(jobs: Jobs, concurrency: int = 1, max_queue: int = MAX_QUEUE) -> Any:
    """The Gradio Blocks app: one tab per job, errors shown in each tab's status line, progress bars, Stop buttons,
    face galleries, a queue with a concurrency limit, and each session's files deleted when it ends."""
    import gradio as gr

    from genface.models.motion.lmdm import EMOTIONS

    _clicked.__annotations__["event"] = gr.SelectData
    tiny = jobs.model == TINY
    note = " (tiny random models: outputs are noise)" if tiny else ""
    private = {"queue": False, "api_visibility": "private"}

    def number_box(name: str, value: float, elem: str, note: str = "") -> Any:
        """A box for the number ``BOUNDS[name]`` bounds, its range in its label: text where the range passes a
        browser number's exact integers (2**53: the seed), else a number box without limits (the browser would
        clamp out-of-range values silently; the job refuses them in words)."""
        form = f"{_form(name)}, " if _form(name) else ""
        label = f"{name} ({note}{form}{_span(name)})"
        if BOUNDS[name].high > 2**53:
            return gr.Textbox(value=str(value), label=label, elem_id=elem)
        return gr.Number(value=value, label=label, elem_id=elem)

    def face_choice(elem: str) -> tuple[Any, Any, Any]:
        """The gallery of the faces in a photo box, its thumbnails, and the number of the face chosen (a click in
        the gallery sets it, and the gallery frames it)."""
        gallery = gr.Image(
            label="Faces found: click one to use it", interactive=False, show_label=True, elem_id=f"{elem}-faces"
        )
        thumbs = gr.State([])
        number = number_box("Face", 0, f"{elem}-face", "0 is the largest; ")
        gallery.select(_clicked, thumbs, number, **private)

        def framed(thumbs: list[np.ndarray], chosen: Any, request: gr.Request) -> str | None:
            return jobs.gallery(thumbs, chosen, request.session_hash)

        number.change(_with_request(framed), [thumbs, number], gallery, preprocess=False, **private)
        return gallery, thumbs, number

    def photo_box(label: str, elem: str, height: int = INPUT_HEIGHT) -> tuple[Any, Any, Any, Any]:
        return gr.Image(type="filepath", label=label, height=height, elem_id=elem), *face_choice(elem)

    def faces_on_drop(box: Any, choice: tuple[Any, Any, Any], label: str, status: Any, results: list[Any], **kw: Any):
        for event in (box.upload, box.clear):
            event(
                _web_faces(jobs, label, len(results), **kw), box, [*choice, status, *results],
                preprocess=False, concurrency_id=PREVIEWS, concurrency_limit=1, api_visibility="private",
                show_progress_on=status,
            )  # fmt: skip

    def job(button: Any, stop: Any, function: Callable, inputs: list[Any], outputs: list[Any], progress_on: Any):
        button.click(
            _web_job(jobs, function, len(outputs)), inputs, outputs, preprocess=False, show_progress_on=progress_on,
            concurrency_id=WORKER,
        )  # fmt: skip

        def stop_tab(request: gr.Request) -> None:
            jobs.stop(request.session_hash, function.__name__)

        stop.click(_with_request(stop_tab), None, None, **private)

    def model_choice(tab: str, info: str) -> Any:
        models = CHOICES[tab]
        return gr.Dropdown(
            [(m.label, key) for key, m in models.items()], value=next(iter(models)), label="Model", info=info,
            elem_id=f"{tab}-model",
        )  # fmt: skip

    def run_buttons(name: str, label: str) -> tuple[Any, Any]:
        with gr.Row():
            button = gr.Button(label, variant="primary", elem_id=f"{name}-run")
            stop = gr.Button("Stop", variant="stop", elem_id=f"{name}-stop")
        return button, stop

    with gr.Blocks(title="genface", delete_cache=(3600, 86400)) as app:
        gr.Markdown(f"# genface{note}\nEverything generated here is marked as synthetic (metadata and watermark).")
        with gr.Tab("Identity check"):
            with gr.Row():
                with gr.Column():
                    reference, *reference_choice = photo_box("Reference face", "identity-reference")
                with gr.Column():
                    target, *target_choice = photo_box("Face to compare", "identity-target")
            check, check_stop = run_buttons("identity", "Compare")
            verdict = gr.Markdown(elem_id="identity-result", min_height=40)
            with gr.Row():
                shown_reference = gr.Image(
                    label="Faces found (reference)", height=RESULT_HEIGHT, interactive=False, elem_id="identity-faces-0"
                )
                shown_target = gr.Image(
                    label="Faces found (compared)", height=RESULT_HEIGHT, interactive=False, elem_id="identity-faces-1"
                )
            shown = [shown_reference, shown_target]
            faces_on_drop(reference, reference_choice, "Reference face", verdict, shown)
            faces_on_drop(target, target_choice, "Face to compare", verdict, shown)
            job(check, check_stop, jobs.identity, [reference, reference_choice[-1], target, target_choice[-1]],
                [*shown, verdict], verdict)  # fmt: skip
        with gr.Tab("Video"), gr.Row():
            with gr.Column():
                face, *video_choice = photo_box("Face photo", "video-face", RESULT_HEIGHT)
                video_model = model_choice(
                    "video",
                    "Choosing one sets its guidance, frames, frame rate and negative prompt; a run with "
                    "another model unloads the one used last.",
                )
                guidance_value, frames_value, fps_value, negative_value = jobs.video_settings(video_model.value)
                prompt = gr.Textbox(label="Prompt", value="A person smiling", elem_id="video-prompt")
                with gr.Row():
                    steps = number_box("Steps", 4 if tiny else 50, "video-steps")
                    guidance = number_box("Guidance", guidance_value, "video-guidance")
                    seed = number_box("Seed", 42, "video-seed")
                with gr.Accordion("More settings", open=False, elem_id="video-more"):
                    negative = gr.Textbox(
                        label="Negative prompt", value=negative_value, elem_id="video-negative",
                        info="The Wan models' is Wan's recommended one (in Chinese, as published).",
                    )  # fmt: skip
                    with gr.Row():
                        frames = number_box("Frames", frames_value, "video-frames")
                        fps = number_box("Frame rate", fps_value, "video-fps")
                make, make_stop = run_buttons("video", "Generate video")
            with gr.Column():
                video = gr.Video(label="Video", height=RESULT_HEIGHT, interactive=False, elem_id="video-result")
                video_info = gr.Markdown(elem_id="video-info", min_height=40)
            video_model.change(jobs.video_settings, video_model, [guidance, frames, fps, negative], **private)
            faces_on_drop(face, video_choice, "Face photo", video_info, [video])
            job(make, make_stop, jobs.video,
                [face, video_choice[-1], prompt, steps, guidance, seed, video_model, negative, frames, fps],
                [video, video_info], video)  # fmt: skip
        with gr.Tab("Makeup"), gr.Row():
            with gr.Column():
                with gr.Row():
                    with gr.Column():
                        source, *source_choice = photo_box("Face photo", "makeup-face")
                    look = gr.Image(
                        type="filepath", label="Makeup reference", height=INPUT_HEIGHT, elem_id="makeup-reference"
                    )
                with gr.Row():
                    strength = number_box("Strength", 1, "makeup-strength")
                    makeup_steps = number_box("Steps", 4 if tiny else 25, "makeup-steps")
                    makeup_guidance = number_box("Guidance", 2.5, "makeup-guidance")
                    makeup_seed = number_box("Seed", 42, "makeup-seed")
                apply, apply_stop = run_buttons("makeup", "Apply makeup")
            with gr.Column():
                result = gr.Image(label="Result", height=RESULT_HEIGHT, interactive=False, elem_id="makeup-result")
                result_info = gr.Markdown(elem_id="makeup-info", min_height=40)
            faces_on_drop(source, source_choice, "Face photo", result_info, [result])
            job(apply, apply_stop, jobs.makeup,
                [source, source_choice[-1], look, strength, makeup_steps, makeup_guidance, makeup_seed],
                [result, result_info], result)  # fmt: skip
        with gr.Tab("Talking face"), gr.Row():
            with gr.Column():
                with gr.Row():
                    photo = gr.Image(type="filepath", label="Face photo", height=INPUT_HEIGHT, elem_id="talk-photo")
                    clip = gr.Video(
                        label="or a face video to dub", sources=["upload"], height=INPUT_HEIGHT, elem_id="talk-video"
                    )
                talk_choice = face_choice("talk")
                speech = gr.Audio(type="filepath", label="Speech", elem_id="talk-speech")
                with gr.Row():
                    talk_model = model_choice("talk", "LatentSync draws the mouth at 512 px (MuseTalk at 256).")
                    silence = gr.Radio(
                        list(SILENCE), value="animate", label="In the speech's pauses",
                        info="; ".join(f"{mode}: {said}" for mode, said in SILENCE.items()), elem_id="talk-silence",
                    )  # fmt: skip
                with gr.Row(visible=False, elem_id="talk-latentsync") as latentsync:
                    talk_steps = number_box("Steps", 4 if tiny else 20, "talk-steps")
                    talk_guidance = number_box("Lip-sync guidance", 1.5, "talk-guidance")
                    talk_seed = number_box("Seed", 1247, "talk-seed", "LatentSync's script: 1247; ")
                speak, speak_stop = run_buttons("talk", "Lip-sync")
            with gr.Column():
                talked = gr.Video(
                    label="Lip-synced video", height=RESULT_HEIGHT, interactive=False, elem_id="talk-result"
                )
                talk_info = gr.Markdown(elem_id="talk-info", min_height=40)
            faces_on_drop(photo, talk_choice, "Face photo", talk_info, [talked])
            faces_on_drop(clip, talk_choice, "Face video", talk_info, [talked], video=True)
            talk_model.change(lambda model: gr.Row(visible=model == "latentsync"), talk_model, latentsync, **private)
            job(speak, speak_stop, jobs.talk,
                [photo, clip, talk_choice[-1], speech, talk_model, silence, talk_steps, talk_guidance, talk_seed],
                [talked, talk_info], talked)  # fmt: skip
        with gr.Tab("Talking portrait"), gr.Row():
            with gr.Column():
                portrait_photo, *portrait_choice = photo_box("Face photo", "portrait-photo")
                portrait_speech = gr.Audio(type="filepath", label="Speech", elem_id="portrait-speech")
                with gr.Row():
                    emotion = gr.Dropdown(list(EMOTIONS), value="neutral", label="Emotion")
                    head_motion = number_box("Head motion", 1, "portrait-head-motion")
                    portrait_seed = number_box("Seed", 42, "portrait-seed")
                with gr.Accordion("Ditto's controls", open=False, elem_id="portrait-ditto"):
                    with gr.Row():
                        factors = [
                            number_box(f"{axis.title()} factor", 1, f"portrait-alpha-{axis}", "1 keeps it, 0 faces "
                                       "the camera; ")
                            for axis in AXES
                        ]  # fmt: skip
                        vad_alpha = number_box("Voice activity", 1, "portrait-vad-alpha", "0: the photo's expression; ")
                    with gr.Row():
                        fade_in = number_box("Fade in", -1, "portrait-fade-in", "frames, -1: none; ")
                        fade_out = number_box("Fade out", -1, "portrait-fade-out", "frames, -1: none; ")
                        fade_type = gr.Radio(
                            list(FADE_TYPES), value="default", label="Fades go to",
                            info="; ".join(f"{kind}: {said}" for kind, said in FADE_TYPES.items()),
                            elem_id="portrait-fade-type",
                        )  # fmt: skip
                    motion_clamp = gr.Checkbox(
                        value=True, label="Motion clamp", elem_id="portrait-motion-clamp",
                        info="Clamp the motion to the bounds in the model's configuration (when it has them).",
                    )  # fmt: skip
                animate, animate_stop = run_buttons("portrait", "Animate")
            with gr.Column():
                animated = gr.Video(
                    label="Talking portrait", height=RESULT_HEIGHT, interactive=False, elem_id="portrait-result"
                )
                portrait_info = gr.Markdown(elem_id="portrait-info", min_height=40)
            faces_on_drop(portrait_photo, portrait_choice, "Face photo", portrait_info, [animated])
            job(animate, animate_stop, jobs.portrait,
                [portrait_photo, portrait_choice[-1], portrait_speech, emotion, head_motion, portrait_seed, *factors,
                 vad_alpha, fade_in, fade_out, fade_type, motion_clamp],
                [animated, portrait_info], animated)  # fmt: skip

        def open_session(request: gr.Request) -> None:
            jobs.open_session(request.session_hash)

        def end_session(request: gr.Request) -> None:
            jobs.end_session(request.session_hash)
            _release_memory()  # what the session held (its state, Gradio's caches of it) goes back too

        app.load(_with_request(open_session), None, None, **private)
        app.unload(_with_request(end_session))
    return app.queue(default_concurrency_limit=concurrency, max_size=max_queue)


def serve(
    model: str = "hub",
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    concurrency: int = 1,
    max_queue: int = MAX_QUEUE,
) -> None:
    """Build and run the app until interrupted."""
    from gradio.utils import get_upload_folder

    uploads = Path(get_upload_folder())
    app = build_app(Jobs(model, device, uploads / "genface", uploads), concurrency, max_queue)
    app.launch(server_name=host, server_port=port, show_error=True)
