"""Top-k weight projection and its annealing schedule."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitspec.engine.model import ModelConfig, Transformer
from circuitspec.engine.sparsity import SparsitySchedule, keep_count, project_model_, project_topk_


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 20), cols=st.integers(1, 20), density=st.floats(0.01, 1.0), seed=st.integers(0, 10**6))
def test_projection_keeps_exactly_k_largest(rows, cols, density, seed):
    torch.manual_seed(seed)
    w = torch.randn(rows, cols)
    original = w.clone()
    k = keep_count(w.numel(), density)
    project_topk_(w, k)
    assert int((w != 0).sum()) == k
    kept = original[w != 0].abs()
    dropped = original[w == 0].abs()
    if dropped.numel():
        assert kept.min() >= dropped.max()
    assert torch.equal(w[w != 0], original[w != 0])  # survivors unchanged


def test_projection_of_every_matrix_in_a_model():
    model = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8))
    matrices = {n: p.data for n, p in model.weight_matrices().items()}
    assert "embed.W_E" in matrices and "unembed.W_U" in matrices and "blocks.0.attn.W_Q" in matrices
    counts = project_model_(matrices, 0.1)
    for name, w in matrices.items():
        assert int((w != 0).sum()) == counts[name] == keep_count(w.numel(), 0.1)
    assert not any("b_" in n or "sink" in n for n in matrices)


def test_schedule_anneals_linearly_then_holds():
    s = SparsitySchedule(target_density=0.1, anneal_fraction=0.5)
    assert s.density(0, 100) == 1.0
    assert s.density(25, 100) == pytest.approx(0.55)
    assert s.density(50, 100) == pytest.approx(0.1)
    assert s.density(100, 100) == pytest.approx(0.1)
    densities = [s.density(t, 100) for t in range(101)]
    assert all(a >= b for a, b in zip(densities, densities[1:]))


def test_a_geometric_anneal_removes_the_same_share_every_step():
    s = SparsitySchedule(target_density=0.02, anneal_fraction=0.5, anneal_shape="geometric")
    assert s.density(0, 100) == 1.0 and s.density(50, 100) == pytest.approx(0.02) and s.density(90, 100) == pytest.approx(0.02)
    ratios = [s.density(t + 1, 100) / s.density(t, 100) for t in range(50)]
    assert max(ratios) == pytest.approx(min(ratios)) == pytest.approx(0.02 ** (1 / 50))
    linear = SparsitySchedule(target_density=0.02, anneal_fraction=0.5)
    assert linear.density(49, 100) / linear.density(48, 100) < 0.7 < min(ratios)  # the linear one's last steps


def test_io_density_gives_embeddings_and_unembedding_their_own_target():
    s = SparsitySchedule(target_density=0.02, anneal_fraction=0.5, io_density=0.1)
    names = ["embed.W_E", "pos_embed.W_pos", "unembed.W_U", "blocks.0.attn.W_Q", "blocks.0.mlp.W_in"]
    end = s.densities(names, 60, 100)
    assert end == {"embed.W_E": 0.1, "pos_embed.W_pos": 0.1, "unembed.W_U": 0.1,
                   "blocks.0.attn.W_Q": 0.02, "blocks.0.mlp.W_in": 0.02}
    half = s.densities(names, 25, 100)  # both anneal from 1 over the same steps
    assert half["unembed.W_U"] == pytest.approx(0.55) and half["blocks.0.attn.W_Q"] == pytest.approx(0.51)
    assert SparsitySchedule(target_density=0.02).densities(names, 60, 100) == dict.fromkeys(names, 0.02)
    model = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8))
    matrices = {n: p.data for n, p in model.weight_matrices().items()}
    counts = project_model_(matrices, s.densities(matrices, 100, 100))
    for name, w in matrices.items():
        want = keep_count(w.numel(), 0.1 if name in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U") else 0.02)
        assert int((w != 0).sum()) == counts[name] == want, name


def test_embed_density_sets_the_input_side_apart_from_the_unembedding():
    s = SparsitySchedule(target_density=0.01, anneal_fraction=0.5, io_density=0.1, embed_density=0.02)
    names = ["embed.W_E", "pos_embed.W_pos", "unembed.W_U", "blocks.0.mlp.W_out"]
    assert s.densities(names, 80, 100) == {"embed.W_E": 0.02, "pos_embed.W_pos": 0.02, "unembed.W_U": 0.1,
                                           "blocks.0.mlp.W_out": 0.01}
    assert s.densities(names, 25, 100)["embed.W_E"] == pytest.approx(0.51)  # annealed like the rest
    without = SparsitySchedule(target_density=0.01, io_density=0.1)  # unset: the I/O target, as before
    assert without.densities(names, 80, 100)["embed.W_E"] == 0.1
    with pytest.raises(ValueError, match="embed_density"):
        SparsitySchedule(embed_density=1.5)


def test_dense_schedule_is_identity():
    s = SparsitySchedule(target_density=1.0)
    assert all(s.density(t, 10) == 1.0 for t in range(11))
    w = torch.randn(5, 5)
    assert torch.equal(project_topk_(w.clone(), 25), torch.ones(5, 5, dtype=torch.bool))


def test_schedule_validation():
    with pytest.raises(ValueError):
        SparsitySchedule(target_density=0)
    with pytest.raises(ValueError):
        SparsitySchedule(anneal_fraction=1.5)
    with pytest.raises(ValueError, match="anneal_shape"):
        SparsitySchedule(anneal_shape="cosine")
    with pytest.raises(ValueError, match="io_density"):
        SparsitySchedule(io_density=0.0)
