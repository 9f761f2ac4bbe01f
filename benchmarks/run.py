"""One entry point for the benchmarks: genface against the reference pipeline, same weights, one process.

    python -m benchmarks.run --pipeline video|makeup|talk|identity [--scale tiny|full] [--device cpu|cuda]
                             [--record] [options of that benchmark]

``video``: :mod:`benchmarks.identity_video` (against diffusers' ConsisIDPipeline); ``makeup``:
:mod:`benchmarks.makeup` (against FluxKontextPipeline with the injector's processors); ``talk``:
:mod:`benchmarks.talking_face` (against the plain diffusers UNet/VAE loop); ``identity``:
:mod:`benchmarks.identity_stack` (face encoding throughput on real photos). Each prints a table;
``--record`` appends it to benchmarks/RESULTS.md with the device, versions and date.
"""

from __future__ import annotations

import argparse
import importlib

MODULES = {
    "video": "benchmarks.identity_video",
    "makeup": "benchmarks.makeup",
    "talk": "benchmarks.talking_face",
    "identity": "benchmarks.identity_stack",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", choices=sorted(MODULES), required=True)
    args, rest = parser.parse_known_args(argv)
    importlib.import_module(MODULES[args.pipeline]).main(rest)


if __name__ == "__main__":
    main()
