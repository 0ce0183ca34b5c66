"""Architectures, sparse kernels and the cap projection."""

import pytest
import torch

import saesanity.core.sae as sae_module
from saesanity.core.architectures import ARCHITECTURES, REGISTRY, make_sae
from saesanity.core.architectures.jumprelu import jumprelu
from saesanity.core.architectures.jumprelu import step_function as step
from saesanity.core.sae import (
    covariance_directions,
    gather_latents,
    project_to_caps,
    unit_sphere_directions,
)
from saesanity.core.sparse_ops import (
    SparseCode,
    gathered_preactivations,
    row_topk,
    select_topk,
    sparse_decode,
)


def initialised_sae(architecture, d_in=12, d_sae=48, k=4, seed=0, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    sae = make_sae(architecture, d_in, d_sae, k=k, **kwargs)
    sae.initialise(unit_sphere_directions(d_sae, d_in, generator), torch.zeros(d_in))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=generator)
    return sae


def test_topk_keeps_exactly_k_latents_per_sample():
    sae = initialised_sae("topk", k=5)
    # Inputs along decoder rows make every kept pre-activation positive.
    x = sae.W_dec.detach().repeat(2, 1)[:64] * 3.0
    code = sae.encode_sparse(x)
    assert torch.equal(code.l0_per_sample(), torch.full((64,), 5.0))
    dense = sae.encode(x)
    assert torch.equal((dense > 0).sum(1), torch.full((64,), 5))
    # ... and they are the k largest pre-activations.
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    expected = pre.topk(5, dim=1).indices.sort(1).values
    assert torch.equal(dense.topk(5, dim=1).indices.sort(1).values, expected)


def test_batchtopk_mean_l0_is_k_over_the_batch():
    sae = initialised_sae("batchtopk", k=3)
    x = torch.randn(200, 12, generator=torch.Generator().manual_seed(1))
    out = sae.forward_train(x)
    l0 = out.code.l0_per_sample()
    assert l0.mean().item() == pytest.approx(3.0)
    assert l0.std() > 0  # per-sample L0 varies: it is a batch-level constraint
    # The kept entries are the k*B largest positive pre-activations of the batch.
    pre = ((x - sae.b_dec) @ sae.W_enc.T + sae.b_enc).detach().relu().flatten()
    cutoff = pre.topk(3 * 200).values[-1]
    assert torch.isclose(out.code.values.detach().min(), cutoff)


def test_batchtopk_hint_does_not_change_the_selection():
    sae = initialised_sae("batchtopk", k=3)
    x = torch.randn(100, 12, generator=torch.Generator().manual_seed(2))
    plain = sae.forward_train(x).code
    for hint in (0.01, 0.5, 100.0):  # too low, reasonable, far too high (fallback)
        hinted = sae.forward_train(x, batch_topk_hint=hint).code
        assert torch.equal(plain.rows, hinted.rows) and torch.equal(plain.latents, hinted.latents)


def test_batchtopk_inference_uses_the_estimated_threshold():
    sae = initialised_sae("batchtopk", k=3)
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(3))
    sae.inference_threshold.fill_(0.2)
    dense = sae.encode(x)
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    assert torch.equal(dense > 0, pre > 0.2)


def test_jumprelu_threshold_gradient_matches_pseudo_derivative():
    eps = 0.1
    theta = torch.tensor([0.5, 0.5, 0.5, 0.5], requires_grad=True)
    # One entry inside the kernel window above theta, one inside below, two outside.
    pre = torch.tensor([0.52, 0.47, 0.70, 0.20], requires_grad=True)
    f = jumprelu(pre, theta, eps)
    assert torch.allclose(f.detach(), torch.tensor([0.52, 0.0, 0.70, 0.0]))
    f.sum().backward()
    # d f / d theta = -(theta / eps) * rect((pre - theta) / eps)
    assert torch.allclose(theta.grad, torch.tensor([-5.0, -5.0, 0.0, 0.0]))
    assert torch.allclose(pre.grad, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    theta.grad = None
    step(pre, theta, eps).sum().backward()
    # d H / d theta = -(1 / eps) * rect((pre - theta) / eps)
    assert torch.allclose(theta.grad, torch.tensor([-10.0, -10.0, 0.0, 0.0]))


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
def test_sparse_training_forward_matches_dense_autograd(architecture):
    """The sparse kernels give the same gradients as a plain dense implementation."""
    sae = initialised_sae(architecture, k=4)
    x = torch.randn(32, 12, generator=torch.Generator().manual_seed(4))
    out = sae.forward_train(x)
    out.x_hat.pow(2).sum().backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}

    sae.zero_grad()
    mask = torch.zeros(32, 48, dtype=torch.bool)
    mask[out.code.rows, out.code.latents] = True
    pre = (x * sae.input_scale - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    dense_x_hat = (pre.relu() * mask) @ sae.W_dec + sae.b_dec
    assert torch.allclose(dense_x_hat, out.x_hat, atol=1e-5)
    dense_x_hat.pow(2).sum().backward()
    for name, grad in sparse_grads.items():
        assert torch.allclose(grad, getattr(sae, name).grad, atol=1e-4), name


def dense_auxk(sae, out, dead, k_aux, values="post_relu"):
    """AuxK written densely. post_relu as dictionary_learning does: top-k_aux post-ReLU
    pre-activations among the dead latents regress the detached residual. pre_activation:
    the dead latents' activations from SAELens's own `calculate_topk_aux_acts` (raw
    pre-activations), with dictionary_learning's normalisation."""
    from sae_lens.saes.topk_sae import calculate_topk_aux_acts

    x_centered = out.x_scaled - sae.b_dec
    pre = x_centered @ sae.W_enc.T + sae.b_enc
    if values == "pre_activation":
        acts = calculate_topk_aux_acts(k_aux, pre, dead)
    else:
        pre = torch.where(dead[None], pre.relu(), torch.full_like(pre, -torch.inf))
        top = pre.topk(k_aux, dim=1)
        acts = torch.zeros_like(pre).scatter(1, top.indices, top.values)
    residual = (out.x_scaled - out.x_hat).detach()
    error = (residual - acts @ sae.W_dec).pow(2).sum(1).mean()
    return error / (residual - residual.mean(0)).pow(2).sum(1).mean()


# 3 dead latents: at most k_aux positive per sample (no top-k needed); 30 and 48: more
# (top-k); "negative": every dead pre-activation below 0 (post-ReLU: nothing to
# reconstruct with; pre-activation: they still reconstruct, and so learn).
@pytest.mark.parametrize("values", ["post_relu", "pre_activation"])
@pytest.mark.parametrize("dead_count", [3, 30, 48, "negative"])
def test_sparse_auxk_matches_the_dense_formula_and_its_gradients(dead_count, values):
    from saesanity.core.architectures.topk import auxk_loss

    sae = initialised_sae("topk", k=4)
    x = torch.randn(32, 12, generator=torch.Generator().manual_seed(5))
    dead = torch.zeros(48, dtype=torch.bool)
    negative = dead_count == "negative"
    dead_count = 20 if negative else dead_count
    dead[torch.randperm(48, generator=torch.Generator().manual_seed(6))[:dead_count]] = True
    if negative:
        with torch.no_grad():
            sae.b_enc[dead] = -100.0
    k_aux = min(6, dead_count)
    losses, grads = [], []
    for loss_fn in (auxk_loss, dense_auxk):
        sae.zero_grad()
        loss = loss_fn(sae, sae.forward_train(x), dead, k_aux, values)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None})
    assert losses[0] > 0 and torch.allclose(losses[0], losses[1], atol=1e-6)
    assert grads[0].keys() == grads[1].keys() and {"W_enc", "W_dec"} <= grads[0].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name
    # Only dead latents get an AuxK gradient, and some of them do, unless none is positive
    # and the values are post-ReLU.
    assert grads[0]["W_enc"][~dead].abs().sum() == 0
    learns = grads[0]["W_enc"][dead].abs().sum() > 0
    assert learns == (values == "pre_activation" or not negative)


@pytest.mark.parametrize("architecture", ["relu", "jumprelu"])
def test_sparse_and_dense_paths_give_the_same_loss_gradients(architecture, monkeypatch):
    """ReLU/JumpReLU switch between a dense and a sparse path by density; both are exact."""
    from saesanity.core.training import TrainConfig, compute_loss

    config = TrainConfig(architecture=architecture, d_sae=48, k=4, jumprelu_bandwidth=0.5)
    grads = []
    for dense_fraction in (1.0, 0.0):  # 1.0: always sparse; 0.0: always dense
        monkeypatch.setattr(sae_module, "DENSE_FRACTION", dense_fraction)
        sae = initialised_sae(
            architecture, k=4, jumprelu_bandwidth=0.5, jumprelu_threshold_init=0.05
        )
        x = torch.randn(32, 12, generator=torch.Generator().manual_seed(4))
        out = sae.forward_train(x)
        assert (out.latents is None) == (dense_fraction == 0.0)
        dead = torch.zeros(48, dtype=torch.bool)
        loss, parts = compute_loss(sae, config, out, step=10**6, dead=dead)
        assert len(parts) == 2  # mse + the sparsity term
        loss.backward()
        grads.append({n: p.grad for n, p in sae.named_parameters() if p.grad is not None})
        grads[-1]["l0"] = out.l0_per_sample
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-4), name


def test_per_latent_gradients_are_the_same_on_every_run():
    """A per-latent parameter gathered at ~1M entries (JumpReLU's thresholds, ReLU's
    decoder norms) must get the same gradient on every backward pass with several
    threads: `tensor[latents]` accumulated in a thread-dependent order there, and two
    identical JumpReLU Frozen Encoder runs drifted apart from step 70."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generator = torch.Generator().manual_seed(0)
        latents = torch.randint(0, 2304, (1_200_000,), generator=generator)
        upstream = torch.randn(1_200_000, generator=generator)

        def gradient() -> torch.Tensor:
            threshold = torch.zeros(2304, requires_grad=True)
            (gather_latents(threshold, latents) * upstream).sum().backward()
            return threshold.grad

        first = gradient()
        assert all(torch.equal(first, gradient()) for _ in range(10))
        expected = torch.zeros(2304, dtype=torch.float64).index_add_(0, latents, upstream.double())
        torch.testing.assert_close(first.double(), expected, rtol=1e-4, atol=1e-3)
    finally:
        torch.set_num_threads(threads)


def test_matryoshka_prefixes_use_nested_groups():
    sae = initialised_sae("matryoshka", d_sae=50, k=6, group_fractions=[0.5, 0.3, 0.2])
    assert sae.group_sizes == [25, 15, 10]
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(5))
    out = sae.forward_train(x)
    dense = out.code.dense()
    for g, limit in enumerate([25, 40, 50]):
        expected = dense[:, :limit] @ sae.W_dec[:limit] + sae.b_dec
        assert torch.allclose(out.prefix_reconstructions[g], expected, atol=1e-5)


def test_sparse_decode_and_gather_agree_with_dense_math():
    generator = torch.Generator().manual_seed(6)
    W = torch.randn(30, 8, generator=generator, requires_grad=True)
    x = torch.randn(10, 8, generator=generator, requires_grad=True)
    b = torch.zeros(30, requires_grad=True)
    code = select_topk(x.detach(), W.detach(), b.detach(), 3)
    values = gathered_preactivations(x, W, b, code)
    decoded = sparse_decode(values, W, SparseCode(code.rows, code.latents, values, 10, 30))
    dense_acts = torch.zeros(10, 30)
    dense_acts[code.rows, code.latents] = 1.0
    reference = ((x @ W.T + b) * dense_acts) @ W
    assert torch.allclose(decoded, reference, atol=1e-5)


def _as_sets(values, columns):
    order = columns.argsort(1)
    return values.gather(1, order), columns.gather(1, order)


@pytest.mark.parametrize(
    ("rows", "num", "k", "dtype"),
    [(64, 2304, 40, torch.float32), (33, 3203, 32, torch.float32), (16, 500, 40, torch.bfloat16)],
)
def test_row_topk_is_the_exact_top_k(rows, num, k, dtype, monkeypatch):
    widths = []  # the row lengths ATen's top-k is called on: the packed path must run
    aten_topk = torch.Tensor.topk
    monkeypatch.setattr(
        torch.Tensor,
        "topk",
        lambda t, *a, **kw: widths.append(t.shape[-1]) or aten_topk(t, *a, **kw),
    )
    generator = torch.Generator().manual_seed(rows)
    pre = torch.randn(rows, num, generator=generator).to(dtype)
    # A row whose top-k all sit in one group, and a row with heavy ties.
    pre[0, :k] = 10 + torch.arange(k, dtype=dtype)
    pre[1] = torch.randint(0, 3, (num,), generator=generator).to(dtype)
    values, columns = row_topk(pre, k)
    assert num not in widths
    expected, _ = pre.topk(k, dim=1)
    assert torch.equal(values.sort(1).values, expected.sort(1).values)
    assert torch.equal(pre.gather(1, columns), values)
    assert all(len(set(row.tolist())) == k for row in columns)  # k distinct columns per row
    if dtype == torch.float32:  # no ties in the other rows: the same columns as ATen
        untied = _as_sets(*row_topk(pre[2:], k))
        assert torch.equal(untied[1], _as_sets(*pre[2:].topk(k, dim=1))[1])


def test_row_topk_falls_back_to_aten_on_nan_rows():
    pre = torch.randn(8, 2304, generator=torch.Generator().manual_seed(1))
    pre[3] = float("nan")
    values, columns = row_topk(pre, 40)
    reference_values, reference_columns = pre.topk(40, dim=1, sorted=False)
    assert torch.equal(columns[3].sort().values, reference_columns[3].sort().values)
    assert torch.equal(_as_sets(values[4:], columns[4:])[1], _as_sets(
        reference_values[4:], reference_columns[4:])[1])  # fmt: skip


def test_cap_projection_puts_every_row_inside_its_cap():
    generator = torch.Generator().manual_seed(7)
    anchors = unit_sphere_directions(500, 20, generator)
    rows = unit_sphere_directions(500, 20, generator)
    rows[0] = -anchors[0]  # antipodal: the degenerate case
    rows[1] = anchors[1]  # already inside: must be left untouched
    projected = project_to_caps(rows, anchors, 0.8)
    cosines = (projected * anchors).sum(1)
    assert (cosines >= 0.8 - 1e-6).all()
    assert torch.allclose(projected.norm(dim=1), torch.ones(500), atol=1e-6)
    assert torch.equal(projected[1], rows[1])
    # Projection is onto the nearest point of the cap: boundary rows sit at cos = tau.
    outside = (rows * anchors).sum(1) < 0.8
    assert torch.allclose(cosines[outside], torch.full((int(outside.sum()),), 0.8), atol=1e-5)


def test_cov_directions_follow_the_covariance():
    generator = torch.Generator().manual_seed(8)
    covariance = torch.diag(torch.tensor([100.0, 1.0, 1.0, 0.0]))
    directions = covariance_directions(4000, covariance, generator)
    assert torch.allclose(directions.norm(dim=1), torch.ones(4000), atol=1e-5)
    # Mass concentrates on the high-variance axis, none on the null axis.
    assert directions[:, 0].abs().mean() > 0.9
    assert directions[:, 3].abs().max() < 1e-6


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_is_its_own_class_and_survives_a_checkpoint(architecture, tmp_path):
    from saesanity.core.checkpoint import load_sae, save_sae

    sae = initialised_sae(architecture, group_fractions=[0.25, 0.75])
    assert type(sae) is REGISTRY[architecture] and sae.architecture == architecture
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(1))
    save_sae(sae, tmp_path / "sae.safetensors", tmp_path / "sae.json", {})
    loaded = load_sae(tmp_path / "sae.safetensors", tmp_path / "sae.json")
    assert type(loaded) is type(sae)
    assert loaded.group_sizes == sae.group_sizes
    assert torch.equal(loaded(x), sae(x))


def test_unknown_architectures_and_options_are_named():
    with pytest.raises(ValueError, match="unknown architecture 'gated'"):
        make_sae("gated", 4, 8, k=2)
    with pytest.raises(TypeError, match="unknown options \\['group_fraction'\\]"):
        make_sae("matryoshka", 4, 8, k=2, group_fraction=[0.5, 0.5])
    with pytest.raises(ValueError, match="needs k >= 1"):
        make_sae("topk", 4, 8)
