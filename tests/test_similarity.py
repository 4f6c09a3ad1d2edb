"""Minibatch CKA: the invariances CKA is built to have (and one it must not have), the unbiased
estimator's near-zero for independent representations, agreement with the closed form of
Kornblith et al. 2019, and the errors a caller can hit."""
import itertools

import pytest
import torch

from transferlab.similarity import MinibatchCKA, cka, gram, hsic1, linear_cka_biased

KERNELS = ["linear", "rbf"]
F64 = torch.float64


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def related(n=400, dx=20, dy=30, noise=1.0, seed=0):
    """X and a noisy linear image of it: CKA strictly between 0 and 1, so changes show."""
    x = randn(n, dx, seed=seed)
    return x, x @ randn(dx, dy, seed=seed + 1) + noise * randn(n, dy, seed=seed + 2)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("batch_size", [None, 50])
def test_self_similarity_is_one(kernel, batch_size):
    x, _ = related()
    assert cka(x, x, kernel, batch_size) == pytest.approx(1, abs=1e-10)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("batch_size", [None, 100])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(kernel, batch_size):
    x, y = related()
    q, _ = torch.linalg.qr(randn(x.shape[1], x.shape[1], seed=9))
    base = cka(x, y, kernel, batch_size)
    assert 0.1 < base < 0.99
    assert cka(x @ q, y, kernel, batch_size) == pytest.approx(base, abs=1e-10)
    assert cka(x * 7.3, y, kernel, batch_size) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("batch_size", [None, 100])
def test_linear_not_invariant_to_anisotropic_scaling(batch_size):
    """The same comparison as above with unequal scales must move the value: the invariance
    tests are not passing because CKA ignores its input."""
    x, y = related()
    scaled = x * torch.linspace(0.1, 10, x.shape[1], dtype=F64)
    assert abs(cka(scaled, y, "linear", batch_size) - cka(x, y, "linear", batch_size)) > 1e-3


@pytest.mark.parametrize("batch_size", [None, 100])
def test_linear_invariant_to_translation(batch_size):
    x, y = related()
    shift = 5 * randn(x.shape[1], seed=7)
    assert cka(x + shift, y, "linear", batch_size) == pytest.approx(
        cka(x, y, "linear", batch_size), abs=1e-9)
    assert linear_cka_biased(x + shift, y) == pytest.approx(linear_cka_biased(x, y), abs=1e-9)


def test_independent_representations_near_zero_only_when_unbiased():
    x, y = randn(2000, 50, seed=1), randn(2000, 60, seed=2)
    unbiased = cka(x, y, "linear", batch_size=200)
    assert abs(unbiased) < 0.05
    # The biased estimator on the same minibatches is inflated by about sqrt(50 * 60) / 200.
    naive = sum(linear_cka_biased(x[s:s + 200], y[s:s + 200]) for s in range(0, 2000, 200)) / 10
    assert naive > 0.15
    assert linear_cka_biased(x, y) > abs(unbiased) + 0.015  # even on all 2000 at once


def test_single_minibatch_equals_full_batch_exactly():
    x, y = related(n=300)
    assert cka(x, y, batch_size=300) == cka(x, y)
    assert cka(x, y, "rbf", batch_size=300) == cka(x, y, "rbf")


def test_minibatch_close_to_closed_form_for_related_representations():
    x, y = related(n=4000, dx=64, dy=48, noise=2.0)
    reference = linear_cka_biased(x, y)
    assert 0.3 < reference < 0.95
    assert cka(x, y, batch_size=500) == pytest.approx(reference, abs=0.05)


def test_conv_shaped_inputs_are_flattened_and_accumulation_matches_cka():
    x = randn(120, 3, 8, 8, seed=3)
    y = torch.nn.functional.avg_pool2d(x, 2).repeat(1, 4, 1, 1) + 0.5 * randn(120, 12, 4, 4, seed=4)
    assert cka(x, y) == cka(x.reshape(120, -1), y.reshape(120, -1))
    for kernel in KERNELS:
        acc = MinibatchCKA(kernel)
        for s in range(0, 120, 40):
            acc.update(x[s:s + 40], y[s:s + 40])
        assert (acc.batches, acc.examples) == (3, 120)
        assert acc.value() == cka(x, y, kernel, batch_size=40)
        assert 0.1 < acc.value() < 0.99


def test_small_last_batch_is_merged_into_previous():
    x, y = related(n=203)
    acc = MinibatchCKA()
    for s, e in [(0, 50), (50, 100), (100, 150), (150, 203)]:
        acc.update(x[s:e], y[s:e])
    assert cka(x, y, batch_size=50) == acc.value()
    assert cka(x, y, batch_size=50) != cka(x, y, batch_size=40)  # batching does matter


def test_hsic1_equals_its_u_statistic():
    """Song et al.'s closed form against the average over all ordered 4-tuples of distinct
    examples of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq, an independent statement of the estimator."""
    x, y = randn(6, 3, seed=5), randn(6, 2, seed=6)
    K, L = gram(x, "rbf"), gram(y)
    tuples = list(itertools.permutations(range(6), 4))
    u = sum(K[i, j] * (L[i, j] + L[q, r] - 2 * L[i, q]) for i, j, q, r in tuples) / len(tuples)
    assert hsic1(K, L).item() == pytest.approx(u.item(), abs=1e-12)


def test_rbf_gram_uses_median_distance():
    x = randn(6, 4, seed=8)  # 15 pairs: an odd count, so the median is one of them
    d = torch.cdist(x, x)
    s = 0.8 * d[tuple(torch.triu_indices(6, 6, 1))].median()
    torch.testing.assert_close(gram(x, "rbf"), torch.exp(-d**2 / (2 * s**2)), atol=1e-12, rtol=0)
    # Duplicated examples: their zero distances must not drag the median (and bandwidth) down.
    x = torch.cat([x, x])[:11]
    d = torch.cdist(x, x)
    pairs = d[tuple(torch.triu_indices(11, 11, 1))]
    s = 0.8 * pairs[pairs > 0].median()  # 55 pairs, 5 of them zero: 50 left, lower middle
    torch.testing.assert_close(gram(x, "rbf"), torch.exp(-d**2 / (2 * s**2)), atol=1e-12, rtol=0)


def test_low_precision_inputs_computed_in_float64():
    x, y = related()
    assert gram(x.to(torch.bfloat16)).dtype == F64
    assert cka(x.float(), y.float()) == pytest.approx(cka(x, y), abs=1e-5)
    assert cka(x.to(torch.bfloat16), y.to(torch.bfloat16)) == pytest.approx(cka(x, y), abs=0.02)


def test_deterministic_bit_for_bit():
    x, y = related()
    for kernel in KERNELS:
        assert cka(x, y, kernel, batch_size=64) == cka(x.clone(), y.clone(), kernel, batch_size=64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_inputs_device():
    x, y = related()
    assert gram(x.cuda(), "rbf").device.type == "cuda"
    for kernel in KERNELS:
        assert cka(x.cuda(), y.cuda(), kernel, 100) == pytest.approx(cka(x, y, kernel, 100), abs=1e-10)


def test_errors_name_the_offending_value():
    x, y = related(n=12)
    with pytest.raises(ValueError, match="m=3"):
        MinibatchCKA().update(x[:3], y[:3])
    with pytest.raises(ValueError, match="m=3"):
        cka(x[:3], y[:3])
    with pytest.raises(ValueError, match="m=3"):
        hsic1(gram(x[:3]), gram(y[:3]))
    with pytest.raises(ValueError, match="10 and 12"):
        MinibatchCKA().update(x[:10], y)
    with pytest.raises(ValueError, match="10 and 12"):
        cka(x[:10], y)
    for call in (lambda: cka(x, y, kernel="cosine"), lambda: gram(x, "cosine"),
                 lambda: MinibatchCKA("cosine")):
        with pytest.raises(ValueError, match="'cosine'.*linear, rbf"):
            call()
    with pytest.raises(ValueError, match="batches=0"):
        MinibatchCKA().value()
    with pytest.raises(ValueError, match="batch_size.*3"):
        cka(x, y, batch_size=3)
