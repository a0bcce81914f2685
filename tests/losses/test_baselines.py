"""The long-tail and logit-standardisation baselines (BKD, DiVE, KD / LTKD on standardised logits, the balanced
softmax) against float64 numpy references written from their authors' formulas: values, gradients and the
identities that tie them to KD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltkd_jax import losses
from losses.test_losses import GROUPS_10, np_kl, np_softmax, ref_ltkd

COUNTS = np.array([500, 300, 180, 110, 65, 40, 24, 14, 9, 5])


def _case(seed, B=6, C=10):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, C)) * 3).astype(np.float32), (rng.normal(size=(B, C)) * 3).astype(np.float32)


def ref_bkd(zs, zt, counts, T, alpha, beta_cb):
    """BKD's KDLoss: teacher softmax times the class-balanced weights, renormalised; alpha T^2 batch-mean KL."""
    w = (1 - beta_cb) / (1 - beta_cb ** counts.astype(np.float64))
    w = w / w.sum() * len(counts)
    q = np_softmax(np.asarray(zt, np.float64) / T) * w
    q = q / q.sum(1, keepdims=True)
    return alpha * T**2 * np.mean(np_kl(q, np_softmax(np.asarray(zs, np.float64) / T)))


def ref_dive(zs, zt, T, power):
    """DiVE: the tempered teacher softmax raised to `power` and renormalised; T^2 batch-mean KL."""
    q = np_softmax(np.asarray(zt, np.float64) / T) ** power
    q = q / q.sum(1, keepdims=True)
    return T**2 * np.mean(np_kl(q, np_softmax(np.asarray(zs, np.float64) / T)))


def ref_standardize(z):
    z = np.asarray(z, np.float64)
    return (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-7)


def ref_kd(zs, zt, T):
    zs, zt = np.asarray(zs, np.float64), np.asarray(zt, np.float64)
    return T**2 * np.mean(np_kl(np_softmax(zt / T), np_softmax(zs / T)))


def ref_ce(z, labels, log_prior=0.0):
    z = np.asarray(z, np.float64) + log_prior
    z = z - z.max(1, keepdims=True)
    return -np.mean(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(1)))


REFERENCES = {  # (ours, reference), both functions of the student logits for the teacher logits `zt`
    "bkd": (lambda s, t: losses.bkd_loss(s, t, COUNTS, temperature=2.0, alpha=1.5, beta_cb=0.99),
            lambda s, t: ref_bkd(s, t, COUNTS, 2.0, 1.5, 0.99)),
    "dive": (lambda s, t: losses.dive_loss(s, t, temperature=3.0, power=0.5), lambda s, t: ref_dive(s, t, 3.0, 0.5)),
    "kd_ls": (lambda s, t: losses.get_distill_loss("kd_ls", temperature=2.0)(s, t, None),
              lambda s, t: ref_kd(ref_standardize(s), ref_standardize(t), 2.0)),
    "ltkd_ls": (lambda s, t: losses.get_distill_loss("ltkd_ls", group_ids=GROUPS_10, alpha=6.0, beta=6.0,
                                                     temperature=2.0)(s, t, None), lambda s, t: ref_ltkd(ref_standardize(s), ref_standardize(t), GROUPS_10, 3, 2.0,
                                                       6.0, 6.0)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_values_and_gradients_match_the_references(name):
    ours, reference = REFERENCES[name]
    zs, zt = _case(1)
    np.testing.assert_allclose(float(ours(zs, zt)), reference(zs, zt), rtol=1e-5, atol=1e-6)
    grad = np.asarray(jax.grad(lambda s: ours(s, zt))(jnp.asarray(zs)), np.float64)
    eps, base, numeric = 1e-5, zs.astype(np.float64), np.zeros(zs.shape)
    for index in np.ndindex(*zs.shape):
        up, down = base.copy(), base.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (reference(up, zt) - reference(down, zt)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


def test_bkd_with_equal_counts_is_kd_plus_ce():
    zs, zt = _case(2)
    labels = np.array([0, 3, 9, 1, 5, 7])
    bkd = losses.get_distill_loss("bkd", class_counts=np.full(10, 37), temperature=2.0, alpha=1.0)
    total, _ = losses.student_objective(zs, zt, labels, distill_loss=bkd, ce_weight=1.0)
    np.testing.assert_allclose(float(total), ref_ce(zs, labels) + ref_kd(zs, zt, 2.0), rtol=1e-5)
    with pytest.raises(ValueError, match="bkd needs the training class counts"):
        losses.get_distill_loss("bkd", temperature=2.0)(zs, zt, labels, 1)


def test_deferred_bkd_is_kd_until_its_reweighting_epoch():
    """The authors' schedule on their 10-class data: uniform weights (plain KD at T) up to `reweight_epoch`, the
    class-balanced ones after; also through student_objective, which passes the 1-based epoch."""
    zs, zt = _case(8)
    labels = np.array([1, 4, 4, 0, 9, 3])
    bkd = losses.get_distill_loss("bkd", class_counts=COUNTS, temperature=2.0, alpha=1.5, beta_cb=0.99,
                                  reweight_epoch=8)
    for epoch, expected in ((1, 1.5 * ref_kd(zs, zt, 2.0)), (8, 1.5 * ref_kd(zs, zt, 2.0)),
                            (9, ref_bkd(zs, zt, COUNTS, 2.0, 1.5, 0.99))):
        _, parts = losses.student_objective(zs, zt, labels, distill_loss=bkd, ce_weight=1.0, epoch=epoch)
        np.testing.assert_allclose(float(parts["distill"]), expected, rtol=1e-5)


def test_dive_with_power_one_and_a_uniform_prior_is_kd():
    """And its objective, with the balanced-softmax CE of a uniform prior, is (1 - alpha) CE + alpha KD."""
    zs, zt = _case(3)
    labels = np.array([2, 2, 8, 0, 4, 6])
    dive = losses.get_distill_loss("dive", temperature=3.0, power=1.0)
    np.testing.assert_allclose(float(dive(zs, zt, labels)), ref_kd(zs, zt, 3.0), rtol=1e-5)
    total, _ = losses.student_objective(zs, zt, labels, distill_loss=dive, ce_weight=0.5,
                                        distill_weight=0.5, class_counts=np.full(10, 20), prior_weight=1.0)
    np.testing.assert_allclose(float(total), 0.5 * ref_ce(zs, labels) + 0.5 * ref_kd(zs, zt, 3.0), rtol=1e-5)


def test_balanced_softmax_ce_adds_the_log_prior():
    zs, zt = _case(4)
    labels = np.array([0, 9, 9, 4, 1, 2])
    kd = losses.get_distill_loss("kd", temperature=4.0)
    _, parts = losses.student_objective(zs, zt, labels, distill_loss=kd, ce_weight=1.0, class_counts=COUNTS,
                                        prior_weight=1.0)
    np.testing.assert_allclose(float(parts["ce"]), ref_ce(zs, labels, np.log(COUNTS / COUNTS.sum())), rtol=1e-5)
    with pytest.raises(ValueError, match="needs the training class counts"):
        losses.student_objective(zs, zt, labels, distill_loss=kd, ce_weight=1.0, prior_weight=1.0)


def test_standardised_losses_ignore_shifts_and_scales_of_the_logits():
    zs, zt = _case(5)
    shift, scale = np.random.default_rng(6).normal(size=(6, 1)) * 10, np.random.default_rng(7).uniform(0.2, 5, (6, 1))
    for name in ("kd_ls", "ltkd_ls"):
        ours, _ = REFERENCES[name]
        moved = ours((zs * scale + shift).astype(np.float32), (zt / scale - shift).astype(np.float32))
        np.testing.assert_allclose(float(moved), float(ours(zs, zt)), rtol=1e-4)
    np.testing.assert_allclose(losses.standardize_logits(zs), ref_standardize(zs), rtol=1e-5, atol=1e-6)
