#!/usr/bin/env python3
"""The worker a team would write instead of clipguard: one Python process that moderates clips
one after another with the same sampling and the same models.

Per clip: PyAV decodes the video (every frame, as a decoder must) and keeps one frame per second
(BASELINE_SAMPLE_FPS, default 1); each kept frame gets the reference PDQ hash (`pdqhash`) and
open_nsfw on onnxruntime (resize 256, centre crop 224, BGR minus the Caffe means); the audio is
resampled to 16 kHz mono and transcribed by faster-whisper with the same whisper tiny.en
CTranslate2 model clipguard converts (greedy, Silero voice-activity filter); the transcript is
embedded with the same MiniLM int8 encoder on onnxruntime (mean pooling, L2 norm). A clip that
fails to decode is counted as an error and the worker goes on.

Models load before timing. Writes JSON: clips, cpu_s (user + system of this process over the
clips), wall_s, load_s, peak_rss_mib, threads, errors, steps_cpu_s (CPU seconds by step: decode,
pdq, open_nsfw, whisper, text), sampling, models.

    loadtest/baseline.py --out baseline.json --nsfw open-nsfw.onnx --whisper DIR \
        --minilm minilm-l6-int8.onnx --tokenizer minilm-l6-tokenizer.json -- CLIP...
"""

import argparse
import json
import os
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--nsfw", required=True, help="open-nsfw.onnx")
    ap.add_argument("--whisper", required=True, help="CTranslate2 whisper tiny.en folder")
    ap.add_argument("--minilm", required=True, help="minilm-l6-int8.onnx")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json of MiniLM")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("clips", nargs="+")
    args = ap.parse_args()
    fps = float(os.environ.get("BASELINE_SAMPLE_FPS", "1"))

    t_load = time.monotonic()
    import av
    import numpy as np
    import onnxruntime as ort
    import pdqhash
    from faster_whisper import WhisperModel
    from PIL import Image
    from tokenizers import Tokenizer

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    nsfw = ort.InferenceSession(args.nsfw, opts, providers=["CPUExecutionProvider"])
    nsfw_input = nsfw.get_inputs()[0].name
    minilm = ort.InferenceSession(args.minilm, opts, providers=["CPUExecutionProvider"])
    minilm_inputs = {i.name for i in minilm.get_inputs()}
    tok = Tokenizer.from_file(args.tokenizer)
    tok.no_padding()
    tok.enable_truncation(128)
    whisper = WhisperModel(args.whisper, device="cpu", compute_type="float32", cpu_threads=args.threads)
    load_s = time.monotonic() - t_load

    def nsfw_score(rgb):
        img = Image.fromarray(rgb)
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32)[:, :, ::-1]
        x = x - np.array([104.0, 117.0, 123.0], dtype=np.float32)
        return float(nsfw.run(None, {nsfw_input: x[None]})[0][0][1])

    def embed(text):
        enc = tok.encode(text)
        feeds = {
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
        }
        if "token_type_ids" in minilm_inputs:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        hidden = minilm.run(None, feeds)[0][0]
        v = hidden.mean(axis=0)
        return v / (np.linalg.norm(v) + 1e-12)

    # CPU seconds by step (this process's threads included), to set beside the stages' own.
    steps = {"decode": 0.0, "pdq": 0.0, "open_nsfw": 0.0, "whisper": 0.0, "text": 0.0}

    class step:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            self.t = time.process_time()

        def __exit__(self, *exc):
            steps[self.name] += time.process_time() - self.t

    errors = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for path in args.clips:
        try:
            with step("decode"), av.open(path) as container:
                frames, pcm = [], []
                next_t = 0.0
                vs = container.streams.video[0] if container.streams.video else None
                if vs is not None:
                    vs.thread_type = "SLICE" if args.threads > 1 else "NONE"
                    vs.codec_context.thread_count = args.threads
                resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
                for frame in container.decode(*container.streams.video, *container.streams.audio):
                    if isinstance(frame, av.VideoFrame):
                        t = float(frame.time or 0.0)
                        if t + 1e-6 >= next_t:
                            frames.append(frame.to_ndarray(format="rgb24"))
                            next_t += 1.0 / fps
                    else:
                        for out in resampler.resample(frame):
                            pcm.append(out.to_ndarray().reshape(-1))
            for rgb in frames:
                with step("pdq"):
                    pdqhash.compute(rgb)
                with step("open_nsfw"):
                    nsfw_score(rgb)
            if pcm:
                with step("whisper"):
                    audio = np.concatenate(pcm).astype(np.float32) / 32768.0
                    segments, _ = whisper.transcribe(
                        audio, language="en", beam_size=1, vad_filter=True, without_timestamps=False
                    )
                    text = " ".join(s.text for s in segments)
                if text.strip():
                    with step("text"):
                        embed(text)
        except Exception as err:  # a broken clip: counted, the worker goes on
            errors += 1
            print(f"baseline: {path}: {err}", file=sys.stderr)
    wall_s = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "clips": len(args.clips),
        "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "wall_s": wall_s,
        "load_s": load_s,
        "peak_rss_mib": r1.ru_maxrss / 1024.0,
        "threads": args.threads,
        "errors": errors,
        "steps_cpu_s": steps,
        "sampling": f"{fps:g} fps, PDQ and open_nsfw per sampled frame, whisper on the whole audio track",
        "models": ["open_nsfw (onnxruntime)", "whisper tiny.en CTranslate2 (faster-whisper)", "MiniLM-L6 int8 (onnxruntime)"],
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
