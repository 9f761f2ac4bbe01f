"""The project's promises about itself: README commands are what CI runs, the docs' examples run, imports stay
light."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import tomllib

from tests import doc_pages

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, f"the README's set-up section must hold exactly two commands, found {commands}"
    return {"run": commands[0], "test": commands[1]}


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _setup_commands()["test"] in ci_lines


def test_the_test_installer_pins_what_pyproject_asks_for() -> None:
    """tests/install.sh installs with tests/constraints.txt: it pins every dependency the test and web extras
    name, to a version inside pyproject's range (a new dependency without a tested version fails here)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    assert "-c tests/constraints.txt" in (ROOT / "tests" / "install.sh").read_text()
    lines = (ROOT / "tests" / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    pins = {canonicalize_name(name): version for name, version in pins.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        *project["dependencies"],
        *(r for extra in ("test", "web", "train", "docs") for r in project["optional-dependencies"][extra]),
    ]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        if name in ("torch", "genface"):  # torch is pinned on install.sh's command line; genface is the project
            continue
        assert name in pins, f"{requirement.name} has no tested version in tests/constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"


def test_readme_run_command_works() -> None:
    steps = _setup_commands()["run"].split(" && ")
    assert steps[0].startswith("pip install torch==2.13.0 -e .")  # satisfied by the test environment
    for step in steps[1:]:
        out = subprocess.run(shlex.split(step), capture_output=True, text=True, check=True, timeout=300)
        assert "faces found in the group photo: 6" in out.stdout
        assert "(same person)" in out.stdout and "-> same" in out.stdout and "-> different" in out.stdout


def test_import_genface_is_light() -> None:
    heavy = "('torch', 'diffusers', 'insightface', 'dlib')"
    code = f"import sys, genface, genface.identity; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_package_folder_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "genface").rglob("__init__.py")}
    found |= {
        "genface.pipelines." + ".".join(p.parent.relative_to(ROOT / "pipelines").parts)
        for p in (ROOT / "pipelines").rglob("__init__.py")
    }
    found = {name.rstrip(".") for name in found}
    assert found == listed


def test_pipelines_import_as_genface_pipelines() -> None:
    import genface.pipelines

    assert Path(genface.pipelines.__file__).parent == ROOT / "pipelines"


def test_doc_python_examples_run(tmp_path, monkeypatch, astronaut, group) -> None:
    """The Python blocks of the front page and the docs run as written, page by page in one namespace each, on
    sample photos saved under the names they use; blocks loading a Hub id need the network, so they are compiled."""
    import numpy as np
    import torch

    from genface.identity import BiSeNet
    from genface.media import save_image, write_video

    save_image(group, tmp_path / "group.jpg")
    save_image(astronaut, tmp_path / "me.jpg")
    for video in ("generated.mp4", "clip.mp4"):  # the front page's is `genface samples`' clip
        write_video(tmp_path / video, np.stack([astronaut, astronaut[:, ::-1]]), fps=2)
    (tmp_path / "path" / "to").mkdir(parents=True)
    torch.save(BiSeNet().state_dict(), tmp_path / "path" / "to" / "parsing_bisenet.pth")
    monkeypatch.chdir(tmp_path)
    namespaces: dict[str, dict] = {}
    for block in doc_pages.blocks("python"):
        code = compile(block.text, block.where, "exec")
        if not block.loads_hub_weights:
            exec(code, namespaces.setdefault(block.page.name, {}))  # noqa: S102
    front, identity = namespaces["README.md"], namespaces["identity.md"]
    assert front["similarity"].mean > 0.97  # the front page: the same face, mirrored in one frame
    assert identity["result"].mean > 0.97 and identity["lips"].shape == (512, 512)
    assert identity["crop"].shape == (112, 112, 3) and len(identity["faces"]) == 6


def test_doc_genface_commands_run(tmp_path, monkeypatch, capsys) -> None:
    """Every `genface ...` line of the front page's and the docs' bash blocks runs (in this process: `python -m
    genface` itself is tested in test_cli.py): offline ones succeed; the ones that need the Hub fail cleanly offline
    (exit 1, a message, no output file). `genface serve` is tests/test_web.py's."""
    import huggingface_hub
    import torch

    from genface.cli import main
    from genface.models.makeup import MakeupInjector

    lines = [line for line in doc_pages.commands("genface ") if not line.startswith("genface serve")]
    assert lines[0] == "genface samples demo && cd demo" and any("--model tiny" in line for line in lines)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["samples", "demo"]) == 0  # the README's first line: the inputs every other line names
    monkeypatch.chdir(tmp_path / "demo")
    # A small checkpoint in the published layout, at FLUX's head size (what `genface convert` assumes).
    small = MakeupInjector(num_layers=1, num_single_layers=1, inner_dim=128, in_channels=4, rank=4)
    torch.save(small.state_dict(), "checkpoint.pt")
    for line in lines[1:]:
        capsys.readouterr()
        code = main(shlex.split(line, comments=True)[1:])
        out = capsys.readouterr()
        if "--model tiny" in line or "--demo" in line or line.startswith("genface convert"):
            assert code == 0, (line, out.err)
        elif line.startswith("genface verify"):
            assert code == 0 and "synthetic (made by genface)" in out.out, (line, out.out + out.err)
        else:
            assert code == 1 and out.err.splitlines()[-1].startswith("genface: error:"), (line, out.err)
    tmp_path /= "demo"
    assert (tmp_path / "tiny.mp4").is_file() and not (tmp_path / "beach.mp4").exists()
    assert (tmp_path / "tiny.png").is_file() and not (tmp_path / "me_made_up.png").exists()
    assert (tmp_path / "flux-makeup-injector" / "config.json").is_file()
    assert (tmp_path / "tiny_talk.mp4").is_file() and not (tmp_path / "dubbed.mp4").exists()
    assert (tmp_path / "tiny_portrait.mp4").is_file() and not (tmp_path / "portrait.mp4").exists()
