"""genface.arguments: one rule per number, the same bounds and words for the command line, the web demo and the
pipelines."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from genface.arguments import FPS, GUIDANCE, SEED, STEPS, VIDEO_FRAMES, VIDEO_SIDE, Rule
from genface.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("rule", "value", "problem"),
    [
        (STEPS, 0, "must be from 1 to 1000, got 0"),
        (STEPS, 1001, "must be from 1 to 1000, got 1001"),
        (STEPS, 2.5, "must be a whole number from 1 to 1000, got 2.5"),
        (STEPS, "3", "must be a whole number from 1 to 1000, got '3'"),
        (STEPS, True, "must be a whole number from 1 to 1000, got True"),
        (STEPS, math.inf, "must be a whole number from 1 to 1000, got inf"),
        (GUIDANCE, math.nan, "must be from 0.0 to 50.0, got nan"),
        (GUIDANCE, -1, "must be from 0.0 to 50.0, got -1"),
        (GUIDANCE, None, "must be a number from 0.0 to 50.0, got None"),
        (SEED, 2**63, "must be from 0 to 9223372036854775807, got 9223372036854775808"),
        (VIDEO_FRAMES, 2, "must be of the form 4k+1 (got 2); try 1 or 5"),
        (VIDEO_FRAMES, 0, "must be from 1 to 257, got 0 (and of the form 4k+1)"),
        (VIDEO_SIDE, 17, "must be a multiple of 16 (got 17); try 16 or 32"),
    ],
)
def test_refusals_say_the_rule(rule: Rule, value: object, problem: str) -> None:
    assert rule.problem(value) == problem
    with pytest.raises(InvalidArgumentError) as info:
        rule.check(value, "Name")
    assert str(info.value) == f"Name {problem}."


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [(STEPS, 1, 1), (STEPS, np.int64(5), 5), (STEPS, 7.0, 7), (STEPS, np.float32(3), 3), (GUIDANCE, 6, 6.0),
     (SEED, 2**63 - 1, 2**63 - 1), (VIDEO_FRAMES, 49, 49), (VIDEO_SIDE, 480, 480), (FPS, 1, 1.0)],
)  # fmt: skip
def test_accepted_values_come_back_as_the_rules_kind(rule: Rule, value: object, expected: float) -> None:
    result = rule.check(value)
    assert result == expected and type(result) is rule.kind


def test_the_command_line_reads_text_with_the_same_words() -> None:
    """argparse's type: text that is no number says so; a number is refused with check()'s words, as typed."""
    assert STEPS.parse("12") == 12 and GUIDANCE.parse("2.5") == 2.5
    for rule, text, message in [(STEPS, "ten", "'ten' is not an integer"), (GUIDANCE, "x", "'x' is not a number"),
                                (GUIDANCE, "nan", "must be from 0.0 to 50.0, got nan"),
                                (STEPS, "1e3", "'1e3' is not an integer"),
                                (VIDEO_FRAMES, "0", "must be from 1 to 257, got 0 (and of the form 4k+1)"),
                                ]:  # fmt: skip
        with pytest.raises(argparse.ArgumentTypeError) as info:
            rule.parse(text)
        assert str(info.value) == message
    assert VIDEO_FRAMES.parse("4") == 4  # the form is the command's check (an error of the run, exit code 1)


def test_one_seed_range_everywhere() -> None:
    """0 to 2^63-1 (a non-negative int64): the largest seed seeds torch and is read exactly from text."""
    import torch

    assert torch.Generator().manual_seed(SEED.check(SEED.high)).initial_seed() == 2**63 - 1
    assert SEED.parse(str(2**63 - 1)) == 2**63 - 1 and np.int64(SEED.high) == SEED.high


def test_spans_as_help_writes_them() -> None:
    assert (STEPS.span, GUIDANCE.span, SEED.span, Rule("x", float, -45, 45).span) == (
        "1-1000", "0-50", "0 to 2^63-1", "-45 to 45"
    )  # fmt: skip


def test_the_pipelines_refuse_with_the_rules_words(dlib_analyzer) -> None:
    """The Python API names its own arguments in the same words (the talking portrait's tiny model)."""
    from genface.pipelines.talking_portrait.tiny import tiny_pipeline
    from genface.samples import sample_path, speech_like

    pipe = tiny_pipeline(dlib_analyzer)
    for options, message in [({"num_inference_steps": 0}, "num_inference_steps must be from 1 to 1000, got 0."),
                             ({"guidance_scale": math.nan}, "guidance_scale must be from 0.0 to 50.0, got nan."),
                             ({"head_motion": 4}, "head_motion must be from 0.0 to 3.0, got 4.")]:  # fmt: skip
        with pytest.raises(InvalidArgumentError) as info:
            pipe(sample_path("astronaut"), speech_like(0.2), audio_rate=16000, **options)
        assert str(info.value) == message
