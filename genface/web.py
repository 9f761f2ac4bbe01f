"""`genface serve`: a Gradio app with one tab per job (identity check, video, makeup, talking face).

Pipelines load on first use and stay loaded; the queue runs one job at a time (``concurrency``) and holds at
most ``max_queue`` waiting. It binds to 127.0.0.1 unless told otherwise. ``model="tiny"`` uses the tiny random
models (offline, CPU; their outputs are noise), for tests and to check an installation. Everything it
writes carries the synthetic-media marks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from genface.errors import GenfaceError

TINY = "tiny"


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


class Jobs:
    """The work behind each tab, with the pipelines loaded once."""

    def __init__(self, model: str = "hub", device: str | None = None, output_dir: str | Path | None = None) -> None:
        self.model, self.device = model, device
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="genface-serve-"))
        self._pipes: dict[str, Any] = {}
        self._analyzer: Any = None

    def _device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _pipe(self, job: str) -> Any:
        if job not in self._pipes:
            from genface.pipelines import load_pipeline

            pipe = load_pipeline(job, TINY if self.model == TINY else None)  # else each task's published weights
            self._pipes[job] = pipe.to(self._device())
        return self._pipes[job]

    def _out(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.output_dir)) / name

    def identity(self, reference: str, target: str) -> tuple[np.ndarray, np.ndarray, str]:
        """Faces found in both photos (drawn) and the FaceSim of the target's largest face to the reference's."""
        from genface.identity import FaceAnalyzer, face_similarity
        from genface.media import load_image

        if not reference or not target:
            raise GenfaceError("Give two photos: a reference face and a face to compare with it.")
        self._analyzer = self._analyzer or FaceAnalyzer("auto")
        images = [load_image(reference), load_image(target)]
        drawn = [draw_faces(image, self._analyzer.detect(image)) for image in images]
        result = face_similarity(images[0], images[1], analyzer=self._analyzer)
        if not result.found.any():
            return drawn[0], drawn[1], "No face found in the second photo."
        verdict = "same person" if result.mean >= result.match_threshold else "different people"
        text = f"FaceSim {result.mean:.3f} ({result.model}; {verdict} by its threshold {result.match_threshold:g})"
        return drawn[0], drawn[1], text

    def video(self, face: str, prompt: str, steps: int, seed: int) -> tuple[str, str]:
        """An identity-preserving video of the face in ``face``."""
        import torch

        from genface.media import to_uint8
        from genface.pipelines import default_size
        from genface.provenance import write_marked_video

        if not face:
            raise GenfaceError("Give a face photo.")
        pipe = self._pipe("video")
        output = pipe(
            prompt or "", face_image=face, num_inference_steps=int(steps), output_type="np",
            generator=torch.Generator().manual_seed(int(seed)), **default_size("video", self.model),
        )  # fmt: skip
        path = write_marked_video(self._out("video.mp4"), to_uint8(output.frames[0]), 8, "identity_video", self.model)
        return str(path), f"{len(output.frames[0])} frames; seed {int(seed)}"

    def makeup(self, face: str, reference: str, strength: float, steps: int, seed: int) -> tuple[str, str]:
        """The face in ``face`` wearing the makeup of ``reference``."""
        import torch

        from genface.media import to_uint8
        from genface.pipelines import default_size
        from genface.provenance import save_marked_image

        if not face or not reference:
            raise GenfaceError("Give a face photo and a makeup reference photo.")
        pipe = self._pipe("makeup")
        output = pipe(
            face, reference, strength=float(strength), num_inference_steps=int(steps), output_type="np",
            generator=torch.Generator().manual_seed(int(seed)), **default_size("makeup", self.model),
        )  # fmt: skip
        path = save_marked_image(self._out("makeup.png"), to_uint8(output.images[0]), "makeup", self.model)
        return str(path), "" if output.facesim is None else f"FaceSim to the source: {output.facesim:.3f}"

    def talk(self, face: str, audio: str) -> tuple[str, str]:
        """The face in ``face`` (a photo or a video) speaking ``audio``."""
        if not face or not audio:
            raise GenfaceError("Give a face (photo or video) and a speech recording.")
        output = self._pipe("talk")(face, audio, output_path=self._out("talk.mp4"))
        return str(output.path), f"{len(output.pitch)} frames at {output.fps:g} fps"


def build_app(jobs: Jobs, concurrency: int = 1, max_queue: int = 16) -> Any:
    """The Gradio Blocks app: one tab per job, errors shown as messages, a queue with a concurrency limit."""
    import gradio as gr

    def guarded(function: Any) -> Any:
        def run(*args: Any, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Any:  # noqa: B008
            try:
                return function(*args)
            except GenfaceError as exc:  # the user's input: say what was wrong
                raise gr.Error(str(exc)) from exc

        run.__name__ = function.__name__
        return run

    note = " (tiny random models: outputs are noise)" if jobs.model == TINY else ""
    with gr.Blocks(title="genface") as app:
        gr.Markdown(f"# genface{note}\nEverything generated here is marked as synthetic (metadata and watermark).")
        with gr.Tab("Identity check"):
            with gr.Row():
                reference = gr.Image(type="filepath", label="Reference face", elem_id="identity-reference")
                target = gr.Image(type="filepath", label="Face to compare", elem_id="identity-target")
            check = gr.Button("Compare", elem_id="identity-run")
            with gr.Row():
                shown_reference = gr.Image(label="Faces found (reference)", interactive=False)
                shown_target = gr.Image(label="Faces found (compared)", interactive=False)
            verdict = gr.Markdown(elem_id="identity-result")
            check.click(guarded(jobs.identity), [reference, target], [shown_reference, shown_target, verdict])
        with gr.Tab("Video"):
            face = gr.Image(type="filepath", label="Face photo", elem_id="video-face")
            prompt = gr.Textbox(label="Prompt", value="A person smiling", elem_id="video-prompt")
            with gr.Row():
                steps = gr.Slider(1, 100, value=4 if jobs.model == TINY else 50, step=1, label="Steps")
                seed = gr.Number(value=0, precision=0, label="Seed")
            make = gr.Button("Generate video", elem_id="video-run")
            video, video_info = gr.Video(label="Video", elem_id="video-result"), gr.Markdown(elem_id="video-info")
            make.click(guarded(jobs.video), [face, prompt, steps, seed], [video, video_info])
        with gr.Tab("Makeup"):
            with gr.Row():
                source = gr.Image(type="filepath", label="Face photo")
                look = gr.Image(type="filepath", label="Makeup reference")
            with gr.Row():
                strength = gr.Slider(0, 2, value=1, step=0.05, label="Strength")
                makeup_steps = gr.Slider(1, 50, value=4 if jobs.model == TINY else 28, step=1, label="Steps")
                makeup_seed = gr.Number(value=0, precision=0, label="Seed")
            apply = gr.Button("Apply makeup")
            result, result_info = gr.Image(label="Result", interactive=False), gr.Markdown()
            apply.click(
                guarded(jobs.makeup), [source, look, strength, makeup_steps, makeup_seed], [result, result_info]
            )
        with gr.Tab("Talking face"):
            with gr.Row():
                speaker = gr.File(label="Face photo or video", file_types=["image", "video"])
                speech = gr.Audio(type="filepath", label="Speech")
            speak = gr.Button("Lip-sync")
            talked, talk_info = gr.Video(label="Lip-synced video"), gr.Markdown()
            speak.click(guarded(jobs.talk), [speaker, speech], [talked, talk_info])
    return app.queue(default_concurrency_limit=concurrency, max_size=max_queue)


def serve(
    model: str = "hub", host: str = "127.0.0.1", port: int = 7860, device: str | None = None, concurrency: int = 1
) -> None:
    """Build and run the app until interrupted."""
    app = build_app(Jobs(model, device), concurrency)
    app.launch(server_name=host, server_port=port, show_error=True)
