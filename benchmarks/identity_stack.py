"""Identity-stack throughput on real photos: detection, embedding, parsing and CLIP features per face.

    python -m benchmarks.identity_stack [--device cpu|cuda] [--repeats N] [--record]

Parsing and EVA02-CLIP run at their real published sizes with random weights (the cost does not
depend on the values). Prints a table of median milliseconds per call.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.harness import device_line, markdown_table, report, time_alternating
from genface.identity import BiSeNet, ClipVisionEncoder, EvaClipVisionModel, FaceAnalyzer, FaceParser, IdentityEncoder
from genface.media import load_image
from genface.samples import sample_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    group, astronaut = load_image(sample_path("group")), load_image(sample_path("astronaut"))

    analyzer = FaceAnalyzer("auto")
    face = analyzer.get(astronaut)
    torch.manual_seed(0)
    face_parser = FaceParser(BiSeNet(), args.device)
    clip = ClipVisionEncoder(EvaClipVisionModel(), args.device)
    encoder = IdentityEncoder(analyzer, face_parser, clip)
    crop = analyzer.align(astronaut, face, "ffhq")

    rows = [
        (f"detect, group photo {group.shape[1]}x{group.shape[0]} (6 faces)", lambda: analyzer.detect(group)),
        (f"detect, portrait {astronaut.shape[1]}x{astronaut.shape[0]}", lambda: analyzer.detect(astronaut)),
        (f"recognition embedding ({analyzer.recognizer.name})", lambda: analyzer.embed(astronaut, face)),
        ("align to 512 FFHQ crop", lambda: analyzer.align(astronaut, face, "ffhq")),
        ("BiSeNet parsing, 512x512", lambda: face_parser.parse(crop)),
        ("EVA02-CLIP-L-14-336 features", lambda: clip.encode(crop[None])),
        ("IdentityEncoder.encode (all of the above)", lambda: encoder.encode(astronaut)),
    ]
    table = markdown_table(
        ["step", f"median ms (of {args.repeats})"],
        [
            [label, f"{time_alternating({label: fn}, args.repeats, args.device).median(label) * 1000:.1f}"]
            for label, fn in rows
        ],  # fmt: skip
    )
    report(f"identity_stack on {device_line(args.device)}, backend={analyzer.backend.name}", table, args.record)


if __name__ == "__main__":
    main()
