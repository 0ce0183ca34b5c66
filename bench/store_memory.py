"""Peak memory of streaming an activation store is bounded by its shuffle group,
not by its size (run on demand, not in CI).

Builds temporary stores of synthetic float32 shards (random normal,
--shard-tokens x --d each) in the store's on-disk format (shard_NNNNN.npy +
manifest.json with per-shard sha256), one per entry of --shards (default 4 and
16 shards: 4x the data). Then, for each store, in a fresh interpreter:

- stream: `ActivationStore(path, shuffle_shards=--shuffle-shards).batch(step, 4096)`
  over one full epoch (the training access pattern);
- whole (control): `np.concatenate` of every shard, what a reader without
  shuffle groups would hold; it shows the measurement does grow with the store.

Each child records its resident set size after imports (VmRSS), resets the
kernel's high-water mark (VmHWM, via /proc/self/clear_refs) and reports VmHWM at
the end: the most physical memory it held at any moment (every allocator
included; page cache is not counted). "peak_over_imports_mb" is the difference,
which includes opening the store (sha256 + read of each shard, one at a time).
The store keeps at most two shuffled groups and builds a group while holding
the previous one (loaded shards + their concatenation, then the concatenation +
its permuted copy), so about 3 groups plus transients is expected whatever the
store's size; the table gives the peak in groups.

Writes bench/out/store_memory.csv and prints it.

    python bench/store_memory.py [--shards 4 16] [--shard-tokens 20000] [--d 576] \
        [--shuffle-shards 2] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

BATCH = 4096


def memory_status_mb() -> dict:
    """Current (VmRSS) and peak (VmHWM) resident set size of this process, in MiB."""
    status = Path("/proc/self/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(values[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: clear_refs 5); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def write_store(path: Path, n_shards: int, shard_tokens: int, d: int, seed: int) -> int:
    """A store of random float32 shards + manifest, as `extract_activations` writes it."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shards = []
    sum_sq = 0.0
    for index in range(n_shards):
        array = rng.standard_normal((shard_tokens, d), dtype=np.float32)
        sum_sq += float(np.square(array, dtype=np.float64).sum())
        name = f"shard_{index:05d}.npy"
        with open(path / name, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        digest = hashlib.sha256((path / name).read_bytes()).hexdigest()
        shards.append({"file": name, "tokens": shard_tokens, "sha256": digest})
    n_tokens = n_shards * shard_tokens
    mean_sq = sum_sq / n_tokens
    manifest = {
        "model": "synthetic", "layer": 0, "hook": "synthetic", "context": 0,
        "dtype": "float32", "d_model": d, "windows": 0, "tokens": n_tokens,
        "exclude_bos": True, "windows_per_shard": 0, "mean_squared_norm": mean_sq,
        "input_scale": 1.0 / mean_sq**0.5, "bos_mean_squared_norm": 0.0, "shards": shards,
    }  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return n_tokens


def child(mode: str, path: str, shuffle_shards: int) -> None:
    """Fresh interpreter: stream one epoch (or load the whole store), report peak RSS."""
    from saesanity.sources.activation_store import ActivationStore

    baseline = memory_status_mb()["VmRSS"]
    reset = reset_peak_rss()
    start = time.perf_counter()
    store = ActivationStore(path, seed=0, shuffle_shards=shuffle_shards)
    checksum = 0.0
    if mode == "stream":
        steps = store.n_tokens // BATCH
        for step in range(steps):
            checksum += float(store.batch(step, BATCH)[0, 0])
    else:
        whole = np.concatenate([store._read_shard(s) for s in store.manifest["shards"]])
        checksum = float(whole[0, 0])
    peak = memory_status_mb()["VmHWM"]
    if not reset:  # peak since process start: import-time transients included
        peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"rss_after_imports_mb": baseline, "rss_peak_mb": peak, "peak_reset": reset,
                      "seconds": time.perf_counter() - start, "checksum": checksum}))  # fmt: skip


def run_child(mode: str, path: Path, shuffle_shards: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, str(path),
               "--shuffle-shards", str(shuffle_shards)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--shard-tokens", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=576)
    parser.add_argument("--shuffle-shards", type=int, default=2)
    parser.add_argument("--tmp", default=None, help="where the temporary stores go")
    parser.add_argument("--out", default="bench/out/store_memory.csv")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.shuffle_shards)
        return
    shard_mb = args.shard_tokens * args.d * 4 / 2**20
    group_mb = shard_mb * args.shuffle_shards
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n_shards in args.shards:
            path = Path(tmp) / f"store_{n_shards}"
            n_tokens = write_store(path, n_shards, args.shard_tokens, args.d, seed=n_shards)
            for mode in ("stream", "whole"):
                report = run_child(mode, path, args.shuffle_shards)
                peak = report["rss_peak_mb"] - report["rss_after_imports_mb"]
                rows.append({
                    "mode": mode, "shards": n_shards, "tokens": n_tokens,
                    "shuffle_shards": args.shuffle_shards, "store_mb": n_shards * shard_mb,
                    "group_mb": group_mb, "rss_after_imports_mb": report["rss_after_imports_mb"],
                    "rss_peak_mb": report["rss_peak_mb"], "peak_reset": report["peak_reset"],
                    "peak_over_imports_mb": peak,
                    "peak_in_groups": peak / group_mb, "seconds": report["seconds"],
                })  # fmt: skip
                print({k: round(v, 1) if isinstance(v, float) else v for k, v in rows[-1].items()},
                      flush=True)  # fmt: skip
    frame = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))


if __name__ == "__main__":
    main()
