"""`genface serve`: a Gradio app with one tab per job (identity check with forgery scores, video, makeup,
talking face, talking portrait).

Pipelines load on first use and stay loaded; the queue runs one job at a time (``concurrency``) and holds at
most ``max_queue`` waiting (more are told the app is busy). It binds to 127.0.0.1 unless told otherwise.
``model="tiny"`` uses the tiny random models (offline, CPU; their outputs and forgery scores are noise), for
tests and to check an installation. Everything it generates carries the synthetic-media marks. Each browser
session's outputs and the uploads its jobs read are deleted when the session ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import logging
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genface.errors import GenfaceError, InvalidArgumentError

TINY = "tiny"
#: The session name of jobs called outside the web app.
LOCAL = "local"
#: The one queue every tab's jobs share (its concurrency limit counts them all).
WORKER = "jobs"
#: Bounds of the numbers a tab takes (the sliders' ranges; checked again for API callers).
MAX_STEPS = {"video": 100, "makeup": 50}
MAX_SEED = 2**32 - 1
MAX_STRENGTH = 2.0
#: Frames the talking-face renderer makes per step (its progress bar counts these steps).
TALK_BATCH = 8
MAX_QUEUE = 16  # jobs that may wait; beyond that a user is told the app is busy
#: What each pipeline's progress bar counts, as the page shows it.
PROGRESS = {"video": "Denoising", "makeup": "Denoising", "talk": "Lip-syncing frames", "portrait": "Animating frames"}
MAX_HEAD_MOTION = 3.0
#: Heights in pixels of the result players and images (whatever the size of the result), and of paired inputs.
RESULT_HEIGHT, INPUT_HEIGHT = 360, 240

logger = logging.getLogger(__name__)


def draw_faces(image: np.ndarray, faces: list[Any]) -> np.ndarray:
    """The image with each face's box, its index and its five keypoints drawn on it."""
    import cv2

    out = image.copy()
    scale = max(1, round(max(image.shape[:2]) / 400))
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 220, 0), 2 * scale)
        cv2.putText(out, str(index), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 220, 0), scale)
        for x, y in face.kps:
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * scale, (255, 60, 60), -1)
    return out


def bounded(value: Any, name: str, low: float, high: float, *, whole: bool = True) -> Any:
    """``value`` as an int (``whole``) or a float in [low, high], or an InvalidArgumentError saying why not."""
    kind, low_text, high_text = (
        ("a whole number", f"{low:,}", f"{high:,}") if whole else ("a number", f"{low:g}", f"{high:g}")
    )
    refusal = InvalidArgumentError(f"{name} must be {kind} from {low_text} to {high_text}, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise refusal from None
    if not low <= number <= high or (whole and not number.is_integer()):
        raise refusal
    return int(number) if whole else number


class Jobs:
    """The work behind each tab, with the pipelines loaded once and each session's files kept apart.

    Outputs go to ``output_dir/<session>/``; inputs under ``upload_dir`` (the web app's uploads) are recorded
    per session by :meth:`track`. :meth:`end_session` deletes both (an upload only once no open session
    has used it).
    """

    def __init__(
        self,
        model: str = "hub",
        device: str | None = None,
        output_dir: str | Path | None = None,
        upload_dir: str | Path | None = None,
    ) -> None:
        self.model, self.device = model, device
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="genface-serve-"))
        self.upload_dir = None if upload_dir is None else Path(upload_dir).resolve()
        self._pipes: dict[str, Any] = {}
        self._analyzer: Any = None
        self._forgery: tuple[Any, str] | None = None
        self._inputs: dict[str, set[Path]] = {}
        self._lock = threading.Lock()

    def _device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _pipe(self, job: str) -> Any:
        if job not in self._pipes:
            from genface.pipelines import load_pipeline

            pipe = load_pipeline(job, TINY if self.model == TINY else None)  # else each task's published weights
            pipe.set_progress_bar_config(desc=PROGRESS[job])  # the page shows the pipeline's bar
            self._pipes[job] = pipe.to(self._device())
        return self._pipes[job]

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

    def _forgery_lines(self, images: list[np.ndarray]) -> list[str]:
        """Each photo's forgery score worded as `genface verify` words it, or one line saying there is none."""
        from genface.forensics import FORGERY_CAUTION, score_line, score_report

        detector, name = self._detector()
        if detector is None:
            return [f"{name[0].upper()}{name[1:]}"]
        reports = [score_report(detector, image, name) for image in images]
        lines = [f"{photo} photo: {score_line(r)}" for photo, r in zip(("Reference", "Compared"), reports, strict=True)]
        return [*lines, f"*Each score is {FORGERY_CAUTION}.*"]

    def _out(self, session: str, name: str) -> Path:
        folder = self.output_dir / session
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder)) / name

    def track(self, session: str, values: Iterable[Any]) -> None:
        """Record the uploaded files among a job's ``values`` as used by ``session``."""
        if self.upload_dir is None:
            return
        paths = {Path(v).resolve() for v in values if isinstance(v, str) and v}
        with self._lock:
            self._inputs.setdefault(session, set()).update(p for p in paths if p.is_relative_to(self.upload_dir))

    def end_session(self, session: str) -> None:
        """Delete the session's outputs, and its uploads that no other open session has used."""
        shutil.rmtree(self.output_dir / session, ignore_errors=True)
        with self._lock:
            mine = self._inputs.pop(session, set())
            still_used = set().union(*self._inputs.values())
        for path in mine - still_used:
            path.unlink(missing_ok=True)
            if path.parent != self.upload_dir:
                with contextlib.suppress(OSError):  # gradio keeps each upload in a folder of its own; kept if not empty
                    path.parent.rmdir()

    def identity(self, reference: str | None, target: str | None, *, session: str = LOCAL) -> tuple[str, str, str]:
        """Faces found in both photos (drawn, as PNG files), the FaceSim of the target's largest face to the
        reference's, and each photo's forgery score."""
        from genface.identity import FaceAnalyzer, face_similarity
        from genface.media import load_image, save_image

        if not reference or not target:
            raise GenfaceError("Give two photos: a reference face and a face to compare with it.")
        self._analyzer = self._analyzer or FaceAnalyzer("auto")
        images = [load_image(reference), load_image(target)]
        drawn = [
            str(save_image(draw_faces(image, self._analyzer.detect(image)), self._out(session, f"faces_{i}.png")))
            for i, image in enumerate(images)
        ]
        result = face_similarity(images[0], images[1], analyzer=self._analyzer)
        if not result.found.any():
            text = "No face found in the second photo."
        else:
            verdict = "same person" if result.mean >= result.match_threshold else "different people"
            text = f"FaceSim {result.mean:.3f} ({result.model}; {verdict} by its threshold {result.match_threshold:g})"
        return drawn[0], drawn[1], "\n\n".join([text, *self._forgery_lines(images)])

    def video(self, face: str | None, prompt: str, steps: Any, seed: Any, *, session: str = LOCAL) -> tuple[str, str]:
        """An identity-preserving video of the face in ``face``."""
        import torch

        from genface.media import to_uint8
        from genface.pipelines import default_size
        from genface.provenance import write_marked_video

        if not face:
            raise GenfaceError("Give a face photo.")
        steps = bounded(steps, "Steps", 1, MAX_STEPS["video"])
        seed = bounded(seed, "Seed", 0, MAX_SEED)
        output = self._pipe("video")(
            prompt or "", face_image=face, num_inference_steps=steps, output_type="np",
            generator=torch.Generator().manual_seed(seed), **default_size("video", self.model),
        )  # fmt: skip
        frames = to_uint8(output.frames[0])
        path = write_marked_video(self._out(session, "video.mp4"), frames, 8, "identity_video", self.model, seed=seed)
        return str(path), f"{len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}; seed {seed}"

    def makeup(
        self, face: str | None, reference: str | None, strength: Any, steps: Any, seed: Any, *, session: str = LOCAL
    ) -> tuple[str, str]:
        """The face in ``face`` wearing the makeup of ``reference``."""
        import torch

        from genface.pipelines import default_size
        from genface.provenance import save_marked_image

        if not face or not reference:
            raise GenfaceError("Give a face photo and a makeup reference photo.")
        strength = bounded(strength, "Strength", 0, MAX_STRENGTH, whole=False)
        steps = bounded(steps, "Steps", 1, MAX_STEPS["makeup"])
        seed = bounded(seed, "Seed", 0, MAX_SEED)
        output = self._pipe("makeup")(
            face, reference, strength=strength, num_inference_steps=steps, output_type="np",
            generator=torch.Generator().manual_seed(seed), **default_size("makeup", self.model),
        )  # fmt: skip
        image = output.images[0]  # uint8 already: the edited crop pasted back into the photo
        path = save_marked_image(self._out(session, "makeup.png"), image, "makeup", self.model, seed=seed)
        return str(path), "" if output.facesim is None else f"FaceSim to the source: {output.facesim:.3f}"

    def talk(self, photo: str | None, video: str | None, audio: str | None, *, session: str = LOCAL) -> tuple[str, str]:
        """The face in ``photo`` or ``video`` (one of them) speaking ``audio``."""
        if bool(photo) == bool(video) or not audio:
            raise GenfaceError("Give a face (a photo or a video, not both) and a speech recording.")
        output = self._pipe("talk")(
            photo or video, audio, batch_size=TALK_BATCH, output_path=self._out(session, "talk.mp4")
        )
        return str(output.path), f"{len(output.pitch)} frames at {output.fps:g} fps"

    def portrait(
        self, photo: str | None, audio: str | None, emotion: str, head_motion: Any, seed: Any, *, session: str = LOCAL
    ) -> tuple[str, str]:
        """The face in ``photo`` speaking ``audio``, with head motion, blinks and the chosen emotion."""
        import torch

        from genface.models.motion.lmdm import EMOTIONS

        if not photo or not audio:
            raise GenfaceError("Give a face photo and a speech recording.")
        if emotion not in EMOTIONS:
            raise InvalidArgumentError(f"Emotion must be one of {', '.join(EMOTIONS)}, got {emotion!r}.")
        head_motion = bounded(head_motion, "Head motion", 0, MAX_HEAD_MOTION, whole=False)
        seed = bounded(seed, "Seed", 0, MAX_SEED)
        output = self._pipe("portrait")(
            photo, audio, emotion=emotion, head_motion=head_motion, generator=torch.Generator().manual_seed(seed),
            output_path=self._out(session, "portrait.mp4"),
        )  # fmt: skip
        blinks = "" if output.blinks is None else f", {output.blinks} blinks"
        return str(output.path), f"{len(output.head_pose)} frames at {output.fps:g} fps{blinks}; seed {seed}"


def _release_memory() -> None:
    """Hand the freed heap back to the system (glibc's malloc_trim), so that a server's resident memory returns
    to its baseline after a burst of jobs."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _web_job(jobs: Jobs, function: Callable[..., tuple], outputs: int) -> Callable[..., tuple]:
    """``function`` as a Gradio event handler: run in the caller's session with its progress shown (the
    pipelines' tqdm bars); a GenfaceError (the user's mistake) logged in one line and shown in the tab's
    status line (its last output), the other outputs cleared."""
    import gradio as gr

    def run(*args: Any) -> tuple:
        *values, request, _ = args
        jobs.track(request.session_hash, values)
        try:
            return function(*values, session=request.session_hash)
        except GenfaceError as exc:
            logger.warning("%s job refused: %s", function.__name__, exc)
            return (*[None] * (outputs - 1), f"**Error:** {exc}")
        finally:
            _release_memory()

    named = [name for name in inspect.signature(function).parameters if name != "session"]
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, keyword) for name in named]
        + [
            inspect.Parameter("request", keyword, annotation=gr.Request),
            inspect.Parameter("progress", keyword, default=gr.Progress(track_tqdm=True)),
        ]
    )
    run.__annotations__ = {"request": gr.Request}  # how Gradio finds where to pass the request
    run.__name__ = function.__name__
    return run


def build_app(jobs: Jobs, concurrency: int = 1, max_queue: int = MAX_QUEUE) -> Any:
    """The Gradio Blocks app: one tab per job, errors shown in each tab's status line, progress bars, a queue
    with a concurrency limit, and each session's files deleted when it ends."""
    import gradio as gr

    from genface.models.motion.lmdm import EMOTIONS

    tiny = jobs.model == TINY
    note = " (tiny random models: outputs are noise)" if tiny else ""
    with gr.Blocks(title="genface", delete_cache=(3600, 86400)) as app:
        gr.Markdown(f"# genface{note}\nEverything generated here is marked as synthetic (metadata and watermark).")
        with gr.Tab("Identity check"):
            with gr.Row():
                reference = gr.Image(
                    type="filepath", label="Reference face", height=INPUT_HEIGHT, elem_id="identity-reference"
                )
                target = gr.Image(
                    type="filepath", label="Face to compare", height=INPUT_HEIGHT, elem_id="identity-target"
                )
            check = gr.Button("Compare", variant="primary", elem_id="identity-run")
            verdict = gr.Markdown(elem_id="identity-result")
            with gr.Row():
                shown_reference = gr.Image(
                    label="Faces found (reference)", height=RESULT_HEIGHT, interactive=False, elem_id="identity-faces-0"
                )
                shown_target = gr.Image(
                    label="Faces found (compared)", height=RESULT_HEIGHT, interactive=False, elem_id="identity-faces-1"
                )
            check.click(
                _web_job(jobs, jobs.identity, 3),
                [reference, target],
                [shown_reference, shown_target, verdict],
                show_progress_on=verdict,
                concurrency_id=WORKER,
            )
        with gr.Tab("Video"), gr.Row():
            with gr.Column():
                face = gr.Image(type="filepath", label="Face photo", height=RESULT_HEIGHT, elem_id="video-face")
                prompt = gr.Textbox(label="Prompt", value="A person smiling", elem_id="video-prompt")
                with gr.Row():
                    steps = gr.Slider(1, MAX_STEPS["video"], value=4 if tiny else 50, step=1, label="Steps")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                make = gr.Button("Generate video", variant="primary", elem_id="video-run")
            with gr.Column():
                video = gr.Video(label="Video", height=RESULT_HEIGHT, interactive=False, elem_id="video-result")
                video_info = gr.Markdown(elem_id="video-info")
            make.click(
                _web_job(jobs, jobs.video, 2),
                [face, prompt, steps, seed],
                [video, video_info],
                show_progress_on=video,
                concurrency_id=WORKER,
            )
        with gr.Tab("Makeup"), gr.Row():
            with gr.Column():
                with gr.Row():
                    source = gr.Image(type="filepath", label="Face photo", height=INPUT_HEIGHT, elem_id="makeup-face")
                    look = gr.Image(
                        type="filepath", label="Makeup reference", height=INPUT_HEIGHT, elem_id="makeup-reference"
                    )
                strength = gr.Slider(0, MAX_STRENGTH, value=1, step=0.05, label="Strength")
                with gr.Row():
                    makeup_steps = gr.Slider(1, MAX_STEPS["makeup"], value=4 if tiny else 25, step=1, label="Steps")
                    makeup_seed = gr.Number(value=0, precision=0, label="Seed")
                apply = gr.Button("Apply makeup", variant="primary", elem_id="makeup-run")
            with gr.Column():
                result = gr.Image(label="Result", height=RESULT_HEIGHT, interactive=False, elem_id="makeup-result")
                result_info = gr.Markdown(elem_id="makeup-info")
            apply.click(
                _web_job(jobs, jobs.makeup, 2),
                [source, look, strength, makeup_steps, makeup_seed],
                [result, result_info],
                show_progress_on=result,
                concurrency_id=WORKER,
            )
        with gr.Tab("Talking face"), gr.Row():
            with gr.Column():
                with gr.Row():
                    photo = gr.Image(type="filepath", label="Face photo", height=INPUT_HEIGHT, elem_id="talk-photo")
                    clip = gr.Video(
                        label="or a face video to dub", sources=["upload"], height=INPUT_HEIGHT, elem_id="talk-video"
                    )
                speech = gr.Audio(type="filepath", label="Speech", elem_id="talk-speech")
                speak = gr.Button("Lip-sync", variant="primary", elem_id="talk-run")
            with gr.Column():
                talked = gr.Video(
                    label="Lip-synced video", height=RESULT_HEIGHT, interactive=False, elem_id="talk-result"
                )
                talk_info = gr.Markdown(elem_id="talk-info")
            speak.click(
                _web_job(jobs, jobs.talk, 2),
                [photo, clip, speech],
                [talked, talk_info],
                show_progress_on=talked,
                concurrency_id=WORKER,
            )
        with gr.Tab("Talking portrait"), gr.Row():
            with gr.Column():
                portrait_photo = gr.Image(
                    type="filepath", label="Face photo", height=INPUT_HEIGHT, elem_id="portrait-photo"
                )
                portrait_speech = gr.Audio(type="filepath", label="Speech", elem_id="portrait-speech")
                with gr.Row():
                    emotion = gr.Dropdown(list(EMOTIONS), value="neutral", label="Emotion")
                    head_motion = gr.Slider(0, MAX_HEAD_MOTION, value=1, step=0.1, label="Head motion")
                    portrait_seed = gr.Number(value=0, precision=0, label="Seed")
                animate = gr.Button("Animate", variant="primary", elem_id="portrait-run")
            with gr.Column():
                animated = gr.Video(
                    label="Talking portrait", height=RESULT_HEIGHT, interactive=False, elem_id="portrait-result"
                )
                portrait_info = gr.Markdown(elem_id="portrait-info")
            animate.click(
                _web_job(jobs, jobs.portrait, 2),
                [portrait_photo, portrait_speech, emotion, head_motion, portrait_seed],
                [animated, portrait_info],
                show_progress_on=animated,
                concurrency_id=WORKER,
            )

        def end_session(request: Any) -> None:
            jobs.end_session(request.session_hash)
            _release_memory()  # what the session held (its state, Gradio's caches of it) goes back too

        end_session.__annotations__["request"] = gr.Request  # how Gradio finds where to pass the request
        app.unload(end_session)
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
