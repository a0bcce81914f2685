"""Independent references for the distillation tests: numpy implementations of PyTorch's resampling rules,
layers and HCL loss, random variables in a module's shapes, and random feature dicts."""
import jax
import jax.numpy as jnp
import numpy as np

from ltkd_jax import methods

CIFAR_PAIRS = ("resnet32x4-resnet8x4", "vgg13-vgg8", "wrn_40_2-wrn_40_1", "resnet110-resnet32",
               "resnet32x4-shufflenet_v1", "vgg13-mobilenet_v2", "wrn_40_2-shufflenet_v1",
               "resnet50_cifar-mobilenet_v2")
IMAGENET_PAIRS = ("resnet34-resnet18", "resnet50-mobilenet_v1")
DEMO_PAIR = "demo_resnet_teacher-demo_resnet_student"


def options(method, teacher_name, student_name):
    """The `distill.*` options a run of `method` on the pair gets from its recipe (ltkd_jax/methods.py)."""
    settings = methods.METHODS[method].settings(f"{teacher_name}-{student_name}")
    return {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("distill.")}


def split(pair):
    teacher, student = pair.split("-")
    return teacher, student


def np_nearest(x, out_hw):  # PyTorch 'nearest' resize of NHWC: src = floor(dst * in / out)
    hi = (np.arange(out_hw[0]) * x.shape[1]) // out_hw[0]
    wi = (np.arange(out_hw[1]) * x.shape[2]) // out_hw[1]
    return x[:, hi][:, :, wi]


def np_adaptive_avg_pool(x, out_hw):
    """PyTorch adaptive_avg_pool2d: cell i spans [floor(i*I/O), ceil((i+1)*I/O)). NHWC, float64."""
    n, h, w, c = x.shape
    oh, ow = out_hw
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        h0, h1 = int(np.floor(i * h / oh)), int(np.ceil((i + 1) * h / oh))
        for j in range(ow):
            w0, w1 = int(np.floor(j * w / ow)), int(np.ceil((j + 1) * w / ow))
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def np_mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def np_hcl(student_maps, teacher_maps):
    """mdistiller's hcl_loss, pooling each map separately."""
    total = 0.0
    for fs, ft in zip(student_maps, teacher_maps):
        fs, ft = np.asarray(fs, np.float64), np.asarray(ft, np.float64)
        loss, cnt, tot = np_mse(fs, ft), 1.0, 1.0
        for level in (4, 2, 1):
            if level >= fs.shape[1]:
                continue
            cnt /= 2.0
            loss += cnt * np_mse(np_adaptive_avg_pool(fs, (level, level)), np_adaptive_avg_pool(ft, (level, level)))
            tot += cnt
        total += loss / tot
    return total


def np_conv(x, kernel, stride=1, pad=(0, 0)):
    """PyTorch Conv2d (cross-correlation) on NHWC with an HWIO kernel."""
    kh, kw = kernel.shape[:2]
    x = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += patch @ kernel[i, j]
    return out


def np_conv_transpose(x, weight, stride, pad):
    """PyTorch ConvTranspose2d on NHWC with a PyTorch (in, out, kh, kw) weight: scatter, then crop `pad`."""
    n, h, w, _ = x.shape
    k = weight.shape[2]
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, weight.shape[1]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,cokl->nklo", x[:, i, j], weight)
    oh, ow = (h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k
    return full[:, pad:pad + oh, pad:pad + ow]


def np_bn_eval(x, bn_params, bn_stats):
    return ((x - bn_stats["mean"]) / np.sqrt(bn_stats["var"] + 1e-5) * bn_params["scale"] + bn_params["bias"])


def _randomize(tree, rng, positive=False):
    """Random values of the same shapes (BN variances positive), so the numpy comparison is not trivial."""
    return jax.tree_util.tree_map(
        lambda a: np.asarray(rng.uniform(0.5, 1.5, a.shape) if positive else rng.normal(0, 0.3, a.shape),
                             np.float32), tree)


def _random_bn_stats(stats, rng):
    return {k: {"mean": _randomize(v["mean"], rng), "var": _randomize(v["var"], rng, positive=True)}
            if "mean" in v else _random_bn_stats(v, rng) for k, v in stats.items()}


def random_variables(module, rng, *args):
    """Random params and BN statistics in the shapes `module.init` would give (nothing initialised)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, train=False))
    return _randomize(shapes["params"], rng), _random_bn_stats(shapes["batch_stats"], rng)


def random_features(rng, feature_shapes, batch):
    """A `return_features=True` dict of random maps in the shapes of `distill.common.feature_shapes`."""
    return {key: [jnp.asarray(rng.normal(size=(batch, *s)), jnp.float32) for s in feature_shapes[key]]
            for key in ("feats", "preact_feats")} | {
        "pooled_feat": jnp.asarray(rng.normal(size=(batch, feature_shapes["pooled"])), jnp.float32)}


def nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(x, np.float32), (0, 3, 1, 2))))


def nhwc(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))
