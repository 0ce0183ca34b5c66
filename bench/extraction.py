"""Activation-extraction throughput of the language model (run on demand, not in CI).

Times, on one batch of `--batch` windows x `--context` tokens (random token ids
after a BOS; the forward pass has no data-dependent work, so random ids cost what
text costs):

- bridge_residual: `LanguageModel.residual`, the extraction call (TransformerBridge
  `run_with_cache` stopped after block `--layer`);
- bridge_full:     `LanguageModel.logits`, the full forward pass (all blocks + unembed);
- hf_truncated:    the plain Hugging Face model cut to the first `--layer + 1` blocks
  (final norm replaced by the identity) with `output_hidden_states=True`, no
  TransformerBridge: the reference for the bridge's own overhead;
- hf_full (`--hf-full`): the plain HF full forward, the reference for bridge_full.

With `--precision bfloat16` the residual variants run under bf16 autocast (the
workflow's `real.activations.precision`) and `bridge_residual_float32` times the float32
extraction in the same rounds, for the speed-up; the check below then compares bf16
with bf16.

Before timing it checks that hf_truncated's last hidden state equals the bridge's
residual (relative error over non-BOS tokens). Every variant runs `--warmup`
times, then `--repeats` rounds, each round running all variants back to back in
a rotated order so that they share the machine's noise; ratios are computed per
round (paired) and their median is reported. The "ideal" column is the ratio of
matmul FLOPs (block + unembedding weights; attention scores are ~4% at context 128).

Writes bench/out/extraction.csv (one row per variant: seconds, tokens/s, paired
throughput ratios to bridge_full and to hf_truncated) and prints it.

    HF_HUB_OFFLINE=1 python bench/extraction.py [--batch 16] [--context 128] \
        [--repeats 3] [--warmup 1] [--threads N] [--hf-full] [--precision bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from saesanity.core.precision import autocast, resolve_precision
from saesanity.sources.language_model import ModelSpec, load_language_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_truncated_hf(model_dir: str, n_blocks: int):
    """Plain HF causal LM keeping only its first `n_blocks` blocks and no final norm,
    so its last hidden state is the residual stream after block n_blocks - 1."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.model.layers = model.model.layers[:n_blocks]
    model.config.num_hidden_layers = n_blocks
    model.model.norm = torch.nn.Identity()
    return model


def block_and_unembed_params(hf_model) -> tuple[int, int]:
    """Matmul weights of one decoder block and of the unembedding."""
    layer = hf_model.model.layers[0]
    block = sum(p.numel() for n, p in layer.named_parameters() if "norm" not in n)
    return block, hf_model.lm_head.weight.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--model-dir", default="resources/model")
    parser.add_argument("--layer", type=int, default=14)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--hf-full", action="store_true", help="also time the plain HF full pass")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--out", default="bench/out/extraction.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    precision = resolve_precision(args.precision, "cpu")
    spec = ModelSpec(name=args.name, layer=args.layer, local_dir=args.model_dir,
                     context=args.context, batch_size=args.batch,
                     precision=precision)  # fmt: skip
    start = time.perf_counter()
    lm = load_language_model(spec)
    lm_float32 = None
    if precision != "float32":
        lm_float32 = load_language_model(dataclasses.replace(spec, precision="float32"))
    print(f"bridge loaded in {time.perf_counter() - start:.1f} s", flush=True)
    n_blocks = spec.layer + 1
    hf_trunc = load_truncated_hf(args.model_dir, n_blocks)
    hf_full = None
    if args.hf_full:
        from transformers import AutoModelForCausalLM

        hf_full = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()

    generator = torch.Generator().manual_seed(0)
    vocab = int(lm.tokenizer.vocab_size)
    tokens = torch.randint(0, vocab, (args.batch, args.context), generator=generator)
    tokens[:, 0] = lm.bos_token_id
    n_tokens = tokens.numel()

    def hf_truncated_residual() -> torch.Tensor:
        with autocast(precision, "cpu"):
            hidden = hf_trunc.model(input_ids=tokens, output_hidden_states=True).hidden_states
        return hidden[-1].float()

    variants = {
        "bridge_residual": lambda: lm.residual(tokens),
        "bridge_full": lambda: lm.logits(tokens),
        "hf_truncated": hf_truncated_residual,
    }
    if hf_full is not None:
        variants["hf_full"] = lambda: hf_full(input_ids=tokens).logits
    if lm_float32 is not None:
        variants["bridge_residual_float32"] = lambda: lm_float32.residual(tokens)
    block_params, unembed_params = block_and_unembed_params(lm.bridge.original_model)
    n_layers = lm.n_layers
    flops = {  # per token, matmuls only (x2 for multiply-add cancels in the ratios)
        "bridge_residual": n_blocks * block_params,
        "bridge_residual_float32": n_blocks * block_params,
        "hf_truncated": n_blocks * block_params,
        "bridge_full": n_layers * block_params + unembed_params,
        "hf_full": n_layers * block_params + unembed_params,
    }
    blocks = {"bridge_residual": n_blocks, "bridge_residual_float32": n_blocks,
              "hf_truncated": n_blocks,
              "bridge_full": n_layers, "hf_full": n_layers}  # fmt: skip

    with torch.no_grad():
        reference = lm.residual(tokens)[:, 1:]
        plain = hf_truncated_residual()[:, 1:]
        # Per token, median: under bf16 a few attention-sink tokens (norms up to 175x the
        # median, left out of training) carry most of an all-token norm.
        per_token = (plain - reference).norm(dim=-1) / reference.norm(dim=-1)
        rel_error = float(per_token.median())
    print(f"hf_truncated vs bridge residual (non-BOS): median relative error {rel_error:.2e}",
          flush=True)  # fmt: skip
    if rel_error > (1e-3 if precision == "float32" else 5e-2):
        raise SystemExit("the plain HF reference does not compute the bridge's residual")

    names = list(variants)
    with torch.no_grad():
        for _ in range(args.warmup):
            for name in names:
                variants[name]()
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for round_index in range(args.repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                variants[name]()
                seconds[name].append(time.perf_counter() - start)
            print({name: round(times[-1], 2) for name, times in seconds.items()}, flush=True)

    def paired_ratio(name: str, reference_name: str) -> float:
        """Median over rounds of throughput(name) / throughput(reference)."""
        ratios = [r / s for s, r in zip(seconds[name], seconds[reference_name], strict=True)]
        return statistics.median(ratios)

    rows = []
    for name in names:
        median = statistics.median(seconds[name])
        rows.append({
            "variant": name, "precision": "float32" if name in ("bridge_full", "hf_full",
            "bridge_residual_float32") else precision, "blocks": blocks[name], "tokens": n_tokens,
            "threads": args.threads, "repeats": args.repeats,
            "seconds_median": median, "seconds_min": min(seconds[name]),
            "seconds_max": max(seconds[name]), "tokens_per_second": n_tokens / median,
            "throughput_vs_bridge_full": paired_ratio(name, "bridge_full"),
            "ideal_vs_bridge_full": flops["bridge_full"] / flops[name],
            "throughput_vs_hf_truncated": paired_ratio(name, "hf_truncated"),
            "ideal_vs_hf_truncated": flops["hf_truncated"] / flops[name],
            "check_relative_error": rel_error,
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.drop(columns=["tokens", "threads", "repeats", "check_relative_error"])
          .to_string(index=False, float_format=lambda v: f"{v:,.3f}"))  # fmt: skip
    residual = frame.set_index("variant").loc["bridge_residual"]
    if lm_float32 is not None:
        print(f"bf16 / float32 extraction: "
              f"{paired_ratio('bridge_residual', 'bridge_residual_float32'):.2f}")  # fmt: skip
    print(
        f"truncated / full throughput: {residual['throughput_vs_bridge_full']:.2f} "
        f"(ideal {residual['ideal_vs_bridge_full']:.2f}); bridge / plain HF (truncated): "
        f"{residual['throughput_vs_hf_truncated']:.2f}"
    )


if __name__ == "__main__":
    main()
