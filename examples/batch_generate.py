"""Identity videos for many (face, prompt) jobs, split over processes with accelerate; resumable.

    accelerate launch [--num_processes N] examples/batch_generate.py --jobs jobs.jsonl --out-dir videos/
                      [--model BestWishYsh/ConsisID-preview | tiny] [--steps 50] [--frames 49]

``jobs.jsonl`` holds one job per line: ``{"id": "alice-beach", "face": "alice.jpg", "prompt": "...",
"seed": 3}`` (``seed`` optional, default 0). Each process takes its share of the unfinished jobs and writes
``<id>.mp4`` (marked as synthetic, written atomically) and then ``<id>.json`` (seed, seconds, FaceSim); a
job whose ``.json`` exists is finished and skipped, so an interrupted batch is simply launched again. When
all processes are done, the main one gathers every job's record, in job order, into ``results.jsonl``.
One GPU per process: ``accelerate launch --multi_gpu --num_processes 8 ...``. Without GPUs, one CPU process
each (gloo): ``torchrun --nproc-per-node 2 examples/batch_generate.py ... --model tiny`` runs the offline demo.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from genface.identity import FaceIdentity, face_similarity
from genface.media import to_uint8
from genface.pipelines import default_size, load_pipeline
from genface.provenance import write_marked_video


def read_jobs(path: Path) -> list[dict[str, Any]]:
    jobs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids = [job.get("id") for job in jobs]
    missing = [i + 1 for i, job in enumerate(jobs) if not {"id", "face", "prompt"} <= set(job)]
    if missing:
        raise SystemExit(f"{path}: lines {missing} need an id, a face and a prompt.")
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: job ids must be unique (they name the output files).")
    return jobs


def render(
    pipe: Any, job: dict[str, Any], size: dict[str, int], args: argparse.Namespace, cache: dict
) -> dict[str, Any]:
    """Make one job's video and return its record; each face photo is encoded once per process."""
    started = time.perf_counter()
    if job["face"] not in cache:
        cache[job["face"]] = pipe.identity_encoder.encode(job["face"])
    identity: FaceIdentity = cache[job["face"]]
    seed = int(job.get("seed", 0))
    frames = args.frames or size["num_frames"]
    output = pipe(
        job["prompt"], identity=identity, num_inference_steps=args.steps, num_frames=frames,
        height=size["height"], width=size["width"], generator=torch.Generator().manual_seed(seed), output_type="np",
    )  # fmt: skip
    video = to_uint8(output.frames[0])
    path = write_marked_video(
        args.out_dir / f"{job['id']}.mp4", video, args.fps, "identity_video", args.model, seed=seed
    )
    similarity = face_similarity(identity, video, analyzer=pipe.identity_encoder.analyzer)
    return {
        "id": job["id"], "video": path.name, "seed": seed, "frames": int(len(video)),
        "seconds": round(time.perf_counter() - started, 2),
        "facesim_mean": None if math.isnan(similarity.mean) else similarity.mean,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--model", default="BestWishYsh/ConsisID-preview", help="Hub id, local folder, or 'tiny'")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frames", type=int, default=None, help="default: the model's (49)")
    parser.add_argument("--fps", type=float, default=8.0)
    args = parser.parse_args()

    state = PartialState(cpu=not torch.cuda.is_available())  # without a GPU: one CPU process each (gloo)
    jobs = read_jobs(args.jobs)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pending = [job for job in jobs if not (args.out_dir / f"{job['id']}.json").is_file()]
    if state.is_main_process:
        print(f"{len(jobs) - len(pending)} of {len(jobs)} jobs already done; {len(pending)} over {state.num_processes}")
    if pending:
        pipe = load_pipeline("video", args.model).to(state.device)  # published weights in bf16, or tiny ones
        size = default_size("video", args.model)
        pipe.set_progress_bar_config(disable=not state.is_local_main_process)
        cache: dict[str, FaceIdentity] = {}
        with state.split_between_processes(pending) as mine:
            for job in mine:
                record = {**render(pipe, job, size, args, cache), "process": state.process_index}
                (args.out_dir / f"{job['id']}.json").write_text(json.dumps(record) + "\n")  # marks it finished
    state.wait_for_everyone()
    if state.is_main_process:
        records = [json.loads((args.out_dir / f"{job['id']}.json").read_text()) for job in jobs]
        (args.out_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        print(f"all {len(records)} jobs done: {args.out_dir / 'results.jsonl'}")


if __name__ == "__main__":
    main()
