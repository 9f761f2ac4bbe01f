"""Video and audio I/O: round trips, frame rate, audio track, resampling and bad input."""

from __future__ import annotations

import ctypes
import hashlib
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from genface.errors import InvalidMediaError
from genface.media import load_audio, read_video, write_video


def _tone(rate: int, seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_freq(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fps", [8.0, 25.0, 29.97])
def test_video_round_trip_keeps_frames_and_rate(tmp_path: Path, fps: float) -> None:
    frames = np.zeros((6, 32, 48, 3), dtype=np.uint8)
    for i in range(6):
        frames[i, :, : 8 * (i + 1)] = 200  # a bar that grows frame by frame
    out = write_video(tmp_path / "v.mp4", frames, fps)
    back, rate = read_video(out)
    assert back.shape == frames.shape
    assert rate == pytest.approx(fps, rel=1e-3)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4  # lossy but faithful
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = np.full((2, 33, 47, 3), 128, dtype=np.uint8)
    back, _ = read_video(write_video(tmp_path / "odd.mp4", frames))
    assert back.shape == (2, 34, 48, 3)


def test_audio_track_and_metadata(tmp_path: Path) -> None:
    import av

    frames = np.zeros((16, 32, 32, 3), dtype=np.uint8)
    path = write_video(tmp_path / "a.mp4", frames, 8, audio=_tone(16000, 2.0), metadata={"comment": "genface test"})
    audio = load_audio(path, 16000)
    assert audio.shape[0] == pytest.approx(32000, rel=0.05)
    assert _dominant_freq(audio, 16000) == pytest.approx(440, abs=5)
    with av.open(str(path)) as container:
        assert container.metadata["comment"] == "genface test"


@pytest.mark.parametrize("rate", [8000, 44100, 96000])
def test_audio_resampled_to_target_rate(rate: int) -> None:
    out = load_audio(_tone(rate, 1.0, 300.0), 16000, source_rate=rate)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == pytest.approx(16000, rel=0.01)
    assert _dominant_freq(out, 16000) == pytest.approx(300, abs=3)


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    stereo = np.stack([_tone(16000), np.zeros(16000, dtype=np.float32)])
    mono = load_audio(stereo, 16000, source_rate=16000)
    assert mono.ndim == 1
    np.testing.assert_allclose(np.abs(mono).max(), 0.25, atol=0.02)  # the two channels averaged
    both = load_audio(stereo, 16000, source_rate=16000, mono=False)
    assert both.shape[0] == 2 and np.abs(both[1]).max() < 1e-6


def test_speech_is_read_as_librosa_reads_it(tmp_path: Path) -> None:
    """``librosa.load(path, sr=16000)``, as MuseTalk and Ditto read speech: channels averaged first, then soxr at
    HQ quality, bit for bit (FFmpeg's resampler, mixing after it, was up to 1.4e-2 off on 44.1 kHz speech)."""
    import librosa

    t = np.arange(44100) / 44100
    left = 0.4 * np.sin(2 * np.pi * (150 + 400 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    stereo = np.stack([left, 0.6 * np.roll(left, 37)])
    path = tmp_path / "speech44k.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2), handle.setsampwidth(2), handle.setframerate(44100)
        handle.writeframes((stereo.T * 32767).astype("<i2").tobytes())
    theirs, _ = librosa.load(path, sr=16000)
    np.testing.assert_array_equal(load_audio(path, 16000), theirs)
    np.testing.assert_array_equal(load_audio(path, 16000, mono=False), librosa.load(path, sr=16000, mono=False)[0])
    samples = stereo.astype(np.float32)
    expected = librosa.resample(librosa.to_mono(samples), orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    np.testing.assert_array_equal(load_audio(samples, 16000, source_rate=44100), expected)
    np.testing.assert_array_equal(load_audio(samples[0], 44100, source_rate=44100), samples[0])  # same rate: as is


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_speech_is_read_as_openai_whisper_reads_it(tmp_path: Path, suffix: str) -> None:
    """``resampler="ffmpeg"``: what openai-whisper's ``load_audio`` (LatentSync's reader) gets from the FFmpeg
    command line, to 3 steps of 16 bits on a 44.1 kHz stereo wav (FFmpeg's command line resamples 16-bit input in
    16 bits) and exactly on an mp3; soxr's resampling is 1e-2 away from it."""
    import shutil
    import subprocess

    t = np.arange(44100) / 44100
    left = 0.4 * np.sin(2 * np.pi * (150 + 400 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    stereo = np.stack([left, 0.6 * np.roll(left, 37)])
    path = tmp_path / "speech44k.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2), handle.setsampwidth(2), handle.setframerate(44100)
        handle.writeframes((stereo.T * 32767).astype("<i2").tobytes())
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the FFmpeg command line is a test dependency (tests/install.sh installs it)"
    if suffix == ".mp3":
        mp3 = tmp_path / "speech44k.mp3"
        subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(path), "-b:a", "128k", str(mp3)], check=True)
        path = mp3
    command = [ffmpeg, "-nostdin", "-threads", "0", "-i", str(path), "-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le",
               "-ar", "16000", "-"]  # fmt: skip
    theirs = np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.int16) / 32768.0
    ours = load_audio(path, 16000, resampler="ffmpeg")
    assert ours.dtype == np.float32 and len(ours) == len(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=(3 if suffix == ".wav" else 0) / 32768 + 1e-9)
    assert np.abs(load_audio(path, 16000)[: len(theirs)] - theirs).max() > 1e-3
    with pytest.raises(InvalidMediaError, match="resampler must be one of"):
        load_audio(path, 16000, resampler="ffmpeg", mono=False)


def test_wav_file(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(22050)
        handle.writeframes((_tone(22050) * 32767).astype("<i2").tobytes())
    out = load_audio(path, 16000)
    assert len(out) == pytest.approx(16000, rel=0.01)


def test_bad_audio(tmp_path: Path) -> None:
    with pytest.raises(InvalidMediaError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "speech").mkdir()
    with pytest.raises(InvalidMediaError, match=r"^Audio file not found: .*speech is a folder\.$"):
        load_audio(tmp_path / "speech")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InvalidMediaError, match="empty"):
        load_audio(empty)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(InvalidMediaError, match="could not be decoded"):
        load_audio(junk)
    with pytest.raises(InvalidMediaError, match="NaN"):
        load_audio(np.array([0.0, np.nan], dtype=np.float32), source_rate=16000)
    with pytest.raises(InvalidMediaError, match="source_rate"):
        load_audio(np.zeros(10, dtype=np.float32))


def test_video_without_audio_has_no_audio_stream(tmp_path: Path) -> None:
    path = write_video(tmp_path / "silent.mp4", np.zeros((2, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(InvalidMediaError, match="no audio stream"):
        load_audio(path)


def test_bad_video(tmp_path: Path) -> None:
    with pytest.raises(InvalidMediaError, match="not found"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "clips.mp4").mkdir()
    with pytest.raises(InvalidMediaError, match=r"^Video file not found: .*clips\.mp4 is a folder\.$"):
        read_video(tmp_path / "clips.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidMediaError, match="could not be decoded"):
        read_video(junk)
    with pytest.raises(InvalidMediaError, match="TxHxWx3"):
        write_video(tmp_path / "x.mp4", np.zeros((0, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(InvalidMediaError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((1, 8, 8, 3), dtype=np.float32))
    assert not (tmp_path / "x.mp4").exists()


def test_variable_frame_rate_video_is_read_at_a_constant_rate(tmp_path) -> None:
    """Frames shown for 1, 3 and 2 ticks of 1/30 s come back evenly spaced at the average rate, each showing
    what was on screen at its moment."""
    from fractions import Fraction

    import av

    from genface.media import read_video

    path = tmp_path / "vfr.mp4"
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    ticks = [0, 1, 4, 6]  # presentation times in 1/30 s; the last frame closes the third one's span
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for colour, tick in zip(colours, ticks, strict=True):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), colour, np.uint8), format="rgb24")
            frame.pts, frame.time_base = tick, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    frames, fps = read_video(path)
    dominant = [int(np.argmax(f[32, 32])) if f[32, 32].min() < 128 else 3 for f in frames]
    on_screen = [int(np.searchsorted(ticks, i / fps * 30 + 1e-6, side="right")) - 1 for i in range(len(frames))]
    assert 15 <= fps <= 30 and len(frames) == round(0.2 * fps) + 1
    assert dominant == on_screen and dominant != list(range(4))  # resampled, not the four frames as they were


def _counter_video(path: Path, count: int, gop: int) -> Path:
    """Frame i shows grey level 2i; a keyframe every ``gop`` frames, so seeking lands between frames."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"keyint_min": str(gop), "sc_threshold": "0"}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 2 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_video_reader_reads_any_span_by_seeking(tmp_path: Path) -> None:
    from genface.media.video import VideoReader

    path = _counter_video(tmp_path / "count.mp4", 60, gop=8)
    whole, _ = read_video(path)
    reader = VideoReader(path)
    assert len(whole) == 60 and reader.frame_shape == (32, 32, 3)
    for start, stop in [(0, 5), (5, 12), (41, 50), (17, 18), (8, 16), (55, 70), (3, 4)]:
        got = reader.read(start, stop)
        assert len(got) == min(stop, 60) - start
        assert all(np.array_equal(frame, whole[start + i]) for i, frame in enumerate(got)), (start, stop)


def test_video_reader_plays_backwards_within_a_bounded_buffer(tmp_path: Path) -> None:
    """Indexing forwards then backwards (a ping-pong) returns the right frames, holding at most 7 frames."""
    from genface.media.video import VideoReader

    path = _counter_video(tmp_path / "count.mp4", 30, gop=5)
    whole, _ = read_video(path)
    reader = VideoReader(path, buffer_bytes=7 * 32 * 32 * 3)
    order = list(range(30)) + list(range(29, -1, -1)) + list(range(12))
    for index in order:
        assert np.array_equal(reader[index], whole[index]), index
        assert len(reader._buffer) <= 7
    with pytest.raises(IndexError, match="no frame 30"):
        reader[30]


def _aac_file(path: Path, samples: np.ndarray, rate: int) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        frame = av.AudioFrame.from_ndarray(np.stack([samples, samples]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    return path


def test_an_aac_track_is_copied_packet_for_packet(tmp_path: Path) -> None:
    """Speech given as a file keeps its own codec, rate and channels: AAC is not re-encoded."""
    import av

    from genface.media.video import VideoWriter

    source = _aac_file(tmp_path / "speech.m4a", _tone(44100, 1.0), 44100)
    with VideoWriter(tmp_path / "out.mp4", 25, audio=source) as writer:
        writer.write(np.zeros((25, 32, 32, 3), np.uint8))

    def packets(path: Path) -> list[bytes]:
        with av.open(str(path)) as container:
            return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]

    assert packets(tmp_path / "out.mp4") == packets(source)
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.channels) == ("aac", 44100, 2)


def test_a_wav_track_is_encoded_at_its_own_rate(tmp_path: Path) -> None:
    import av

    from genface.media.video import VideoWriter

    with wave.open(str(tmp_path / "speech.wav"), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(22050)
        wav.writeframes((_tone(22050, 1.0, 300.0) * 32767).astype("<i2").tobytes())
    with VideoWriter(tmp_path / "out.mp4", 25, audio=tmp_path / "speech.wav") as writer:
        writer.write(np.zeros((25, 32, 32, 3), np.uint8))
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.channels) == ("aac", 22050, 1)
    back = load_audio(tmp_path / "out.mp4", 22050)
    assert _dominant_freq(back, 22050) == pytest.approx(300, abs=3)


@pytest.mark.parametrize("rate", [192000, 1000000])
def test_a_track_at_a_rate_aac_does_not_take_is_written_at_48_khz(tmp_path: Path, rate: int) -> None:
    """192 kHz or 1 MHz speech (as a file or as samples) is resampled to 48 kHz: once the encoder refused it."""
    import wave

    import av

    from genface.media.video import VideoWriter, aac_rate

    tone = _tone(rate, 0.5, 300.0)
    with wave.open(str(tmp_path / "speech.wav"), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(rate)
        wav.writeframes((tone * 32767).astype("<i2").tobytes())
    for name, audio in (("file.mp4", tmp_path / "speech.wav"), ("samples.mp4", tone)):
        with VideoWriter(tmp_path / name, 25, audio=audio, audio_rate=rate) as writer:
            writer.write(np.zeros((12, 32, 32, 3), np.uint8))
        with av.open(str(tmp_path / name)) as container:
            stream = container.streams.audio[0]
            assert (stream.codec_context.name, stream.rate) == ("aac", 48000)
        back = load_audio(tmp_path / name, 16000)
        assert len(back) == pytest.approx(8000, abs=600) and _dominant_freq(back, 16000) == pytest.approx(300, abs=3)
    assert [aac_rate(r) for r in (1, 7350, 8000, 11000, 22050, 22051, 44100, 96000, 96001)] == [
        8000, 7350, 8000, 16000, 22050, 24000, 44100, 96000, 48000
    ]  # fmt: skip


def _dirty_heap(seed: int) -> None:
    """Leave freed heap blocks full of random bytes, as a process that has run models does."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    rng = np.random.default_rng(seed)
    sizes = [64, 256, 1024, 4096, 16384, 65536] * 40
    blocks = [libc.malloc(size) for size in sizes]
    for block, size in zip(blocks, sizes, strict=True):
        ctypes.memmove(block, rng.bytes(size), size)
    for block in blocks:
        libc.free(ctypes.c_void_p(block))


def _stream_digest(path: Path) -> str:
    with av.open(str(path)) as container:
        packets = container.demux(container.streams.video[0])
        return hashlib.sha256(b"".join(bytes(packet) for packet in packets)).hexdigest()


def _drifting_clip(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    """Smooth random images whose brightness drifts over time."""
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(frames, height, width, 3)), 1), 2)
    smooth += np.cumsum(rng.normal(size=(frames, 1, 1, 3)) * 40, 0)
    return np.clip(smooth * 8 - 100, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("clip", [(0, 17, 64, 64), (3, 9, 96, 160)])
def test_the_same_frames_give_the_same_stream_whatever_the_layout_or_heap(tmp_path: Path, clip) -> None:
    # Clips on which x264's AVX-512 macroblock tree gave 2 to 4 different streams in 4 writes.
    frames = _drifting_clip(*clip)
    planar = np.moveaxis(np.ascontiguousarray(np.moveaxis(frames, -1, 0)), 0, -1)  # as the pipelines return them
    digests = set()
    for seed, array in enumerate([frames, planar, frames[:, ::-1][:, ::-1], frames]):
        _dirty_heap(seed)
        digests.add(_stream_digest(write_video(tmp_path / f"{seed}.mp4", array)))
    assert len(digests) == 1
