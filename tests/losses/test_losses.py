"""The losses against independent float64 numpy references written from the paper's formulas (README, "LTKD in one
paragraph")."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltkd_jax import losses

# The losses as the training step runs them, jitted with their hyper-parameters static: one compilation per call
# signature instead of one per operation. The bad-input tests call the functions themselves (their checks read
# concrete group ids), and one test compares the two.
kd_decomposition = jax.jit(losses.kd_decomposition, static_argnames=("num_groups", "temperature"))
kd_loss = jax.jit(losses.kd_loss, static_argnames="temperature")
dkd_loss = jax.jit(losses.dkd_loss, static_argnames=("alpha", "beta", "temperature"))
ltkd_loss = jax.jit(losses.ltkd_loss, static_argnames=("alpha", "beta", "temperature", "num_groups", "rebalance",
                                                       "uniform_intra"))

# ----------------------------------------------------------------------------------------------------------------
# Reference implementations: probabilities first, then plain ratios, the way the paper writes them.


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p, q):
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(np.where(p > 0, q, 1))), 0), -1)


def ref_parts(zs, zt, group_ids, num_groups, T):
    """Per-sample group probabilities and within-group distributions, by explicit loops over groups."""
    zs, zt = np.asarray(zs, np.float64), np.asarray(zt, np.float64)
    ps, pt = np_softmax(zs / T), np_softmax(zt / T)
    ids = np.broadcast_to(group_ids, zs.shape)
    B = zs.shape[0]
    Ps = np.zeros((B, num_groups))
    Pt = np.zeros((B, num_groups))
    intra = np.zeros((B, num_groups))
    for b in range(B):
        for k in range(num_groups):
            members = ids[b] == k
            Ps[b, k], Pt[b, k] = ps[b, members].sum(), pt[b, members].sum()
            intra[b, k] = np_kl(pt[b, members] / Pt[b, k], ps[b, members] / Ps[b, k])
    return ps, pt, Ps, Pt, intra


def ref_ltkd(zs, zt, group_ids, num_groups, T, alpha, beta, rebalance=True, uniform_intra=True):
    _, _, Ps, Pt, intra = ref_parts(zs, zt, group_ids, num_groups, T)
    if rebalance:
        sums = Pt.sum(axis=0)
        w = sums.mean() / sums
        Pt_hat = w * Pt / (w * Pt).sum(axis=1, keepdims=True)
    else:
        Pt_hat = Pt
    inter = np_kl(Pt_hat, Ps)
    intra_total = intra.sum(1) if uniform_intra else (Pt * intra).sum(1)
    return T**2 * (alpha * inter.mean() + beta * intra_total.mean())


def ref_kd(zs, zt, T):
    ps, pt = np_softmax(np.asarray(zs, np.float64) / T), np_softmax(np.asarray(zt, np.float64) / T)
    return T**2 * np_kl(pt, ps).mean()


def ref_dkd_mdistiller(zs, zt, labels, alpha, beta, T):
    """mdistiller's dkd_loss, line for line in numpy: cat_mask for TCKD, a -1000 target mask for NCKD."""
    zs, zt = np.asarray(zs, np.float64), np.asarray(zt, np.float64)
    B, C = zs.shape
    gt = np.eye(C)[labels]
    other = 1 - gt
    ps, pt = np_softmax(zs / T), np_softmax(zt / T)
    bs = np.stack([(ps * gt).sum(1), (ps * other).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * other).sum(1)], 1)
    tckd = np.sum(bt * (np.log(bt) - np.log(bs))) * T**2 / B
    pt2 = np_softmax(zt / T - 1000.0 * gt)
    masked_s = zs / T - 1000.0 * gt
    log_ps2 = masked_s - masked_s.max(1, keepdims=True)
    log_ps2 = log_ps2 - np.log(np.exp(log_ps2).sum(1, keepdims=True))  # torch.log_softmax
    nckd = np.sum(np.where(pt2 > 0, pt2 * (np.log(np.where(pt2 > 0, pt2, 1)) - log_ps2), 0)) * T**2 / B
    return alpha * tckd + beta * nckd


def random_case(seed, B=6, C=10, scale=3.0):
    rng = np.random.default_rng(seed)
    zs = (rng.normal(size=(B, C)) * scale).astype(np.float32)
    zt = (rng.normal(size=(B, C)) * scale + np.linspace(2, -2, C)).astype(np.float32)
    return zs, zt


GROUPS_10 = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
TOL = dict(rtol=2e-5, atol=2e-5)

# ----------------------------------------------------------------------------------------------------------------


def test_decomposition_matches_reference_and_identity():
    zs, zt = random_case(0)
    inter, intra = kd_decomposition(zs, zt, GROUPS_10, num_groups=3, temperature=4.0)
    ps, pt, Ps, Pt, ref_intra = ref_parts(zs, zt, GROUPS_10, 3, 4.0)
    np.testing.assert_allclose(inter, np_kl(Pt, Ps), **TOL)
    np.testing.assert_allclose(intra, ref_intra, **TOL)
    # KL(p_t || p_s) = inter + sum_k P_t,k * intra_k, per sample.
    np.testing.assert_allclose(np.asarray(inter) + (Pt * np.asarray(intra)).sum(1), np_kl(pt, ps), **TOL)


def test_kd_loss_matches_reference():
    zs, zt = random_case(1)
    for T in (1.0, 4.0):
        np.testing.assert_allclose(kd_loss(zs, zt, temperature=T), ref_kd(zs, zt, T), **TOL)


def test_ltkd_without_corrections_is_kd():
    zs, zt = random_case(2)
    got = ltkd_loss(zs, zt, GROUPS_10, alpha=1.0, beta=1.0, temperature=4.0, rebalance=False,
                    uniform_intra=False)
    np.testing.assert_allclose(got, kd_loss(zs, zt, temperature=4.0), **TOL)
    np.testing.assert_allclose(got, ref_kd(zs, zt, 4.0), **TOL)


@pytest.mark.parametrize("rebalance", [True, False])
@pytest.mark.parametrize("uniform_intra", [True, False])
def test_ltkd_matches_reference(rebalance, uniform_intra):
    zs, zt = random_case(3, B=8)
    got = ltkd_loss(zs, zt, GROUPS_10, alpha=6.0, beta=2.0, temperature=4.0, rebalance=rebalance,
                    uniform_intra=uniform_intra)
    want = ref_ltkd(zs, zt, GROUPS_10, 3, 4.0, 6.0, 2.0, rebalance, uniform_intra)
    np.testing.assert_allclose(got, want, **TOL)


def test_ltkd_is_not_kd_when_corrected():
    """Guards against a rebalance / uniform flag that is silently ignored."""
    zs, zt = random_case(4)
    kd = kd_loss(zs, zt, temperature=4.0)
    for rebalance, uniform in [(True, False), (False, True), (True, True)]:
        got = ltkd_loss(zs, zt, GROUPS_10, alpha=1.0, beta=1.0, temperature=4.0, rebalance=rebalance,
                        uniform_intra=uniform)
        assert abs(float(got) - float(kd)) > 1e-3


def test_dkd_matches_mdistiller():
    zs, zt = random_case(5, B=7, C=12)
    labels = np.array([0, 3, 11, 5, 5, 2, 7])
    for alpha, beta, T in [(1.0, 8.0, 4.0), (1.0, 0.5, 1.0), (2.0, 6.0, 2.0)]:
        got = dkd_loss(zs, zt, labels, alpha=alpha, beta=beta, temperature=T)
        np.testing.assert_allclose(got, ref_dkd_mdistiller(zs, zt, labels, alpha, beta, T), rtol=5e-5, atol=5e-5)


def test_dkd_is_the_per_sample_two_group_case():
    zs, zt = random_case(6, B=5)
    labels = np.array([1, 9, 4, 4, 0])
    per_sample = (np.arange(10)[None, :] != labels[:, None]).astype(np.int32)  # 0 target, 1 non-target
    two_group = ltkd_loss(zs, zt, per_sample, alpha=1.0, beta=8.0, temperature=4.0, num_groups=2,
                          rebalance=False, uniform_intra=True)
    np.testing.assert_allclose(dkd_loss(zs, zt, labels, alpha=1.0, beta=8.0, temperature=4.0), two_group,
                               **TOL)
    # And that case is itself DKD's decomposition: TCKD is the inter term, NCKD the non-target KL.
    inter, intra = kd_decomposition(zs, zt, per_sample, num_groups=2, temperature=4.0)
    np.testing.assert_allclose(intra[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(16 * (np.mean(inter) + 8 * np.mean(intra[:, 1])), two_group, **TOL)


def test_rebalancing_equalises_batch_sums_and_keeps_rows_normalised():
    zs, zt = random_case(7, B=16)
    T = 4.0
    _, _, _, Pt, _ = ref_parts(zs, zt, GROUPS_10, 3, T)
    mask = np.eye(3, dtype=bool)[GROUPS_10]
    rebalanced = jax.jit(lambda t: losses.rebalance_group_log_probs(losses._grouped_log_probs(t, mask, T)[0]))(
        jnp.asarray(zt))
    rebalanced = np.exp(np.asarray(rebalanced, np.float64))
    np.testing.assert_allclose(rebalanced.sum(1), 1.0, rtol=1e-6)
    # The scale factors w_k = mean(S)/S_k are what P^ applies before its per-sample renormalisation:
    # rebalanced[b, k] / Pt[b, k] = w_k / z_b, so sum_b z_b * rebalanced[b, k] = mean(S) for every k.
    ratio = rebalanced / Pt
    w_over_z = ratio / ratio[:, :1]  # w_k / w_0, the same in every row
    np.testing.assert_allclose(w_over_z, np.broadcast_to(w_over_z[0], w_over_z.shape), rtol=1e-4)
    sums = Pt.sum(0)
    np.testing.assert_allclose(w_over_z[0], sums[0] / sums, rtol=1e-4)
    scaled_sums = (Pt * (sums.mean() / sums)).sum(0)
    np.testing.assert_allclose(scaled_sums, sums.mean(), rtol=1e-9)
    before, after = jax.jit(functools.partial(losses.teacher_group_sums, group_ids=GROUPS_10, num_groups=3,
                                              temperature=T))(zt)
    np.testing.assert_allclose(before, sums, rtol=1e-5)
    np.testing.assert_allclose(after, rebalanced.sum(0), rtol=1e-5)
    np.testing.assert_allclose(np.sum(after), 16.0, rtol=1e-5)
    assert np.ptp(after) < np.ptp(before)  # the teacher's head bias is reduced


def test_rebalancing_weights_carry_no_gradient():
    """d loss / d teacher logits must not flow through w: compare with w frozen at its value."""
    zs, zt = random_case(8)
    T = 4.0
    mask = np.eye(3, dtype=bool)[GROUPS_10]

    def inter_with_frozen_weights(teacher_logits, log_weights):
        log_group_t, _ = losses._grouped_log_probs(teacher_logits, mask, T)
        log_group_s, _ = losses._grouped_log_probs(jnp.asarray(zs), mask, T)
        scaled = log_group_t + log_weights
        rebalanced = scaled - jax.nn.logsumexp(scaled, axis=-1, keepdims=True)
        return jnp.mean(losses._kl_from_logs(rebalanced, log_group_s))

    @jax.jit
    def log_weights_of(teacher_logits):
        log_group_t, _ = losses._grouped_log_probs(teacher_logits, mask, T)
        log_sums = jax.nn.logsumexp(log_group_t, axis=0)
        return jax.nn.logsumexp(log_sums) - jnp.log(3.0) - log_sums

    log_weights = log_weights_of(jnp.asarray(zt))
    want = jax.jit(jax.grad(inter_with_frozen_weights))(jnp.asarray(zt), log_weights)
    got = jax.jit(jax.grad(lambda t: ltkd_loss(zs, t, GROUPS_10, alpha=1.0, beta=0.0, temperature=T) / T**2))(
        jnp.asarray(zt))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["kd", "dkd", "ltkd", "ltkd_plain"])
def test_gradients_match_finite_differences(name):
    zs, zt = random_case(9, B=4, C=10)
    labels = np.array([0, 5, 9, 2])
    refs = {
        "kd": lambda s: ref_kd(s, zt, 4.0),
        "dkd": lambda s: ref_dkd_mdistiller(s, zt, labels, 1.0, 8.0, 4.0),
        "ltkd": lambda s: ref_ltkd(s, zt, GROUPS_10, 3, 4.0, 6.0, 6.0),
        "ltkd_plain": lambda s: ref_ltkd(s, zt, GROUPS_10, 3, 2.0, 1.0, 0.5, False, False),
    }
    ours = {
        "kd": lambda s: kd_loss(s, zt, temperature=4.0),
        "dkd": lambda s: dkd_loss(s, zt, labels, alpha=1.0, beta=8.0, temperature=4.0),
        "ltkd": lambda s: ltkd_loss(s, zt, GROUPS_10, alpha=6.0, beta=6.0, temperature=4.0),
        "ltkd_plain": lambda s: ltkd_loss(s, zt, GROUPS_10, alpha=1.0, beta=0.5, temperature=2.0,
                                          rebalance=False, uniform_intra=False),
    }
    grad = np.asarray(jax.grad(ours[name])(jnp.asarray(zs)), np.float64)
    eps = 1e-5
    numeric = np.zeros_like(grad)
    base = zs.astype(np.float64)
    for index in np.ndindex(*base.shape):
        up, down = base.copy(), base.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (refs[name](up) - refs[name](down)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


def test_jit_and_per_sample_evaluation_agree():
    zs, zt = random_case(10, B=6)
    loss = functools.partial(losses.ltkd_loss, group_ids=GROUPS_10, alpha=6.0, beta=6.0, temperature=4.0)
    np.testing.assert_allclose(jax.jit(loss)(zs, zt), loss(zs, zt), rtol=1e-6)
    # Batched decomposition terms equal the same terms computed one sample at a time (no vmap needed).
    inter, intra = kd_decomposition(zs, zt, GROUPS_10, num_groups=3, temperature=4.0)
    for b in range(6):
        one_inter, one_intra = kd_decomposition(zs[b:b + 1], zt[b:b + 1], GROUPS_10, num_groups=3,
                                                temperature=4.0)
        np.testing.assert_allclose(one_inter[0], inter[b], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(one_intra[0], intra[b], rtol=1e-5, atol=1e-7)
    # A (B, C) map with identical rows is the (C,) map.
    tiled = np.tile(GROUPS_10, (6, 1))
    np.testing.assert_allclose(losses.ltkd_loss(zs, zt, tiled, alpha=6.0, beta=6.0, temperature=4.0),
                               loss(zs, zt), rtol=1e-6)


def test_per_sample_groups_with_rebalancing_match_reference():
    rng = np.random.default_rng(11)
    zs, zt = random_case(11, B=5, C=9)
    ids = np.stack([rng.permutation(np.arange(9) % 3) for _ in range(5)])
    got = ltkd_loss(zs, zt, ids, alpha=2.0, beta=3.0, temperature=2.0)
    np.testing.assert_allclose(got, ref_ltkd(zs, zt, ids, 3, 2.0, 2.0, 3.0), **TOL)


def test_large_logits_and_underflowing_groups_stay_finite():
    rng = np.random.default_rng(12)
    B, C = 4, 10
    zs = (rng.uniform(-100, 100, size=(B, C))).astype(np.float32)
    # The teacher puts ~e^-200 on the tail group: it underflows to 0 in float32 but not in log space.
    zt = np.where(GROUPS_10 == 2, -100.0, 100.0) + rng.normal(size=(B, C))
    zt = zt.astype(np.float32)
    for fn in [
        lambda s: ltkd_loss(s, zt, GROUPS_10, alpha=6.0, beta=6.0, temperature=1.0),
        lambda s: ltkd_loss(s, zt, GROUPS_10, alpha=1.0, beta=1.0, temperature=1.0, rebalance=False,
                            uniform_intra=False),
        lambda s: kd_loss(s, zt, temperature=1.0),
        lambda s: dkd_loss(s, zt, np.array([0, 8, 9, 4]), alpha=1.0, beta=8.0, temperature=1.0),
    ]:
        value, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(zs))
        assert np.isfinite(value) and np.all(np.isfinite(grad))
    # Values still agree with the float64 reference, where e^-200 is representable.
    np.testing.assert_allclose(
        ltkd_loss(zs, zt, GROUPS_10, alpha=6.0, beta=6.0, temperature=1.0),
        ref_ltkd(zs, zt, GROUPS_10, 3, 1.0, 6.0, 6.0), rtol=1e-4)
    np.testing.assert_allclose(kd_loss(zs, zt, temperature=1.0), ref_kd(zs, zt, 1.0), rtol=1e-4)
    # And the teacher side is finite too.
    grad_t = jax.jit(jax.grad(lambda t: ltkd_loss(zs, t, GROUPS_10, alpha=6.0, beta=6.0, temperature=1.0)))(
        jnp.asarray(zt))
    assert np.all(np.isfinite(grad_t))


def test_thousand_classes():
    rng = np.random.default_rng(13)
    B, C = 3, 1000
    zs = rng.normal(size=(B, C)).astype(np.float32) * 2
    zt = rng.normal(size=(B, C)).astype(np.float32) * 2
    ids = np.repeat(np.arange(3), [334, 333, 333])
    for T in (1.0, 4.0):
        np.testing.assert_allclose(ltkd_loss(zs, zt, ids, alpha=6.0, beta=6.0, temperature=T),
                                   ref_ltkd(zs, zt, ids, 3, T, 6.0, 6.0), rtol=1e-4)


@st.composite
def loss_cases(draw):
    B = draw(st.sampled_from([1, 4]))  # few distinct shapes: each new one compiles every op again
    C = draw(st.sampled_from([2, 3, 5, 10, 37, 100, 1000]))
    G = draw(st.integers(1, min(C, 5)))
    per_sample = draw(st.booleans())
    T = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    zs = (rng.normal(size=(B, C)) * scale).astype(np.float32)
    zt = (rng.normal(size=(B, C)) * scale).astype(np.float32)

    def layout():  # every group non-empty, otherwise arbitrary
        return rng.permutation(np.concatenate([np.arange(G), rng.integers(0, G, C - G)]))

    ids = np.stack([layout() for _ in range(B)]) if per_sample else layout()
    return zs, zt, ids.astype(np.int32), G, T


@settings(max_examples=30, deadline=None)
@given(loss_cases())
def test_properties_over_shapes_temperatures_and_layouts(case):
    zs, zt, ids, G, T = case
    ltkd = functools.partial(losses.ltkd_loss, temperature=T, num_groups=G)

    # Jitted together, as the training step runs them: one compilation per drawn case instead of one per operation.
    @jax.jit
    def computed(zs, zt, ids):
        return (losses.kd_decomposition(zs, zt, ids, num_groups=G, temperature=T),
                losses.kd_loss(zs, zt, temperature=T),
                ltkd(zs, zt, ids, alpha=1.0, beta=1.0, rebalance=False, uniform_intra=False),
                ltkd(zs, zt, ids, alpha=6.0, beta=6.0))

    (inter, intra), kd, plain, got = computed(zs, zt, ids)
    _, _, Ps, Pt, ref_intra = ref_parts(zs, zt, ids, G, T)
    ps, pt = np_softmax(zs.astype(np.float64) / T), np_softmax(zt.astype(np.float64) / T)
    assert np.all(np.asarray(intra) >= -1e-6) and np.all(np.asarray(inter) >= -1e-6)
    np.testing.assert_allclose(np.asarray(inter) + (Pt * np.asarray(intra)).sum(1), np_kl(pt, ps),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(intra, ref_intra, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(plain, kd, rtol=1e-4, atol=1e-5 * T**2)
    np.testing.assert_allclose(got, ref_ltkd(zs, zt, ids, G, T, 6.0, 6.0), rtol=1e-4, atol=1e-5 * T**2)


# ----------------------------------------------------------------------------------------------------------------
# Registry, objective and bad input.


def test_registry_entries_match_the_functions():
    zs, zt = random_case(14, B=5)
    labels = np.array([0, 1, 2, 3, 4])
    call = lambda name, **kw: float(jax.jit(losses.get_distill_loss(name, group_ids=GROUPS_10, **kw))(zs, zt, labels))
    ltkd = functools.partial(ltkd_loss, zs, zt, GROUPS_10, temperature=4.0)
    np.testing.assert_allclose(call("kd", temperature=4.0), kd_loss(zs, zt, temperature=4.0), rtol=1e-6)
    np.testing.assert_allclose(call("dkd", alpha=1.0, beta=8.0, temperature=4.0),
                               dkd_loss(zs, zt, labels, alpha=1.0, beta=8.0, temperature=4.0), rtol=1e-6)
    np.testing.assert_allclose(call("ltkd", alpha=6.0, beta=6.0, temperature=4.0), ltkd(alpha=6.0, beta=6.0),
                               rtol=1e-6)
    np.testing.assert_allclose(call("ltkd_inter_biased", alpha=1.0, temperature=4.0),
                               ref_ltkd(zs, zt, GROUPS_10, 3, 4.0, 1.0, 0.0, rebalance=False), rtol=1e-5)
    np.testing.assert_allclose(call("ltkd_inter_balanced", alpha=1.0, temperature=4.0),
                               ref_ltkd(zs, zt, GROUPS_10, 3, 4.0, 1.0, 0.0, rebalance=True), rtol=1e-5)
    np.testing.assert_allclose(call("ltkd_intra_uniform", beta=1.0, temperature=4.0),
                               ref_ltkd(zs, zt, GROUPS_10, 3, 4.0, 0.0, 1.0), rtol=1e-5)


def test_student_objective_and_warmup():
    assert float(losses.warmup_factor(1, 20)) == pytest.approx(0.05)
    assert float(losses.warmup_factor(20, 20)) == 1.0
    assert float(losses.warmup_factor(240, 20)) == 1.0
    assert float(losses.warmup_factor(3, 0)) == 1.0
    zs, zt = random_case(15, B=4)
    labels = np.array([1, 2, 3, 9])
    distill = losses.get_distill_loss("ltkd", group_ids=GROUPS_10, alpha=6.0, beta=6.0, temperature=4.0)
    total, parts = jax.jit(functools.partial(losses.student_objective, distill_loss=distill, ce_weight=1.0,
                                             warmup_epochs=20))(zs, zt, labels, epoch=5)
    ce = -np.mean(np.log(np_softmax(zs.astype(np.float64))[np.arange(4), labels]))
    np.testing.assert_allclose(parts["ce"], ce, rtol=1e-5)
    np.testing.assert_allclose(total, ce + 0.25 * ref_ltkd(zs, zt, GROUPS_10, 3, 4.0, 6.0, 6.0), rtol=1e-5)


@pytest.mark.parametrize("ids, message", [
    (np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3]), "group id 3 is outside"),
    (np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, -1]), "group id -1 is outside"),
    (np.array([0, 0, 0, 0, 0, 0, 0, 2, 2, 2]), "group 1 has no class"),
    (np.array([0, 1, 2]), "group_ids has 3 classes"),
    (np.array([0.0, 1.0] * 5), "must be integers"),
])
def test_bad_group_ids_raise_clear_errors(ids, message):
    zs, zt = random_case(16)
    with pytest.raises(ValueError, match=message):
        losses.ltkd_loss(zs, zt, ids, alpha=1.0, beta=1.0, temperature=4.0)
    with pytest.raises(ValueError, match=message):
        losses.kd_decomposition(zs, zt, ids, num_groups=3, temperature=4.0)


def test_other_bad_inputs():
    zs, zt = random_case(17)
    with pytest.raises(ValueError, match="temperature=0"):
        losses.kd_loss(zs, zt, temperature=0)
    with pytest.raises(ValueError, match="must both be"):
        losses.kd_loss(zs, zt[:, :5], temperature=1.0)
    for name, hparams, named in (("ltdk", {}, "ltdk"), ("ltkd", dict(alpha=1.0, temperature=4.0), "beta"),
                                 ("ltkd", dict(alpha=1.0, beta=1.0, temperature=4.0, gamma=3), "gamma")):
        with pytest.raises(ValueError) as raised:  # one line naming the bad name or hyper-parameter
            losses.get_distill_loss(name, **hparams)
        assert "\n" not in str(raised.value) and repr(named) in str(raised.value)
    per_sample = np.tile(GROUPS_10, (6, 1))
    per_sample[2] = 0
    with pytest.raises(ValueError, match="group 1 has no class in sample 2"):
        losses.ltkd_loss(zs, zt, per_sample, alpha=1.0, beta=1.0, temperature=4.0)
