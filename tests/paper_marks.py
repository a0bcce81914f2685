"""The paper's Δ rows (best − second best) and the underlined (second-best) cells that survived in its text, for
Tables I-VI: what tests/tools/test_report.py checks the report's ranking rule against. Bold did not survive."""
from ltkd_jax.tools.paper_results import ABLATION_PAIRS


def _row(*values):
    return {pair: (values[2 * i], values[2 * i + 1]) for i, pair in enumerate(ABLATION_PAIRS)}


_DELTA_I = {
    'resnet32x4-resnet8x4': {10: (6.58, 2.05), 20: (9.58, 3.37), 100: (12.12, 4.97)},
    'vgg13-vgg8': {10: (5.95, 1.20), 20: (8.08, 2.18), 100: (8.54, 3.44)},
    'wrn_40_2-wrn_40_1': {10: (5.52, 1.51), 20: (7.30, 2.13), 100: (5.88, 3.02)},
    'resnet110-resnet32': {10: (7.57, 1.48), 20: (9.14, 2.83), 100: (9.24, 3.84)},
}

_UNDERLINED_I = {
}

_DELTA_II = {
    'resnet32x4-shufflenet_v1': {10: (4.64, 1.28), 20: (6.94, 1.81), 100: (8.75, 3.83)},
    'vgg13-mobilenet_v2': {10: (4.68, 1.34), 20: (6.85, 1.76), 100: (6.49, 2.82)},
    'wrn_40_2-shufflenet_v1': {10: (6.16, 1.52), 20: (7.98, 2.31), 100: (8.18, 3.20)},
    'resnet50_cifar-mobilenet_v2': {10: (5.14, 0.26), 20: (7.59, 1.50), 100: (8.59, 3.24)},
}

_UNDERLINED_II = {
    ('resnet32x4-shufflenet_v1', 10, 'T'): 'dkd',
    ('resnet32x4-shufflenet_v1', 10, 'All'): 'dkd',
    ('resnet32x4-shufflenet_v1', 20, 'T'): 'dkd',
    ('resnet32x4-shufflenet_v1', 20, 'All'): 'dkd',
    ('resnet32x4-shufflenet_v1', 100, 'All'): 'dkd',
    ('resnet32x4-shufflenet_v1', 100, 'T'): 'reviewkd',
    ('vgg13-mobilenet_v2', 10, 'T'): 'dkd',
    ('vgg13-mobilenet_v2', 10, 'All'): 'dkd',
    ('vgg13-mobilenet_v2', 20, 'T'): 'dkd',
    ('vgg13-mobilenet_v2', 20, 'All'): 'dkd',
    ('vgg13-mobilenet_v2', 100, 'All'): 'dkd',
    ('vgg13-mobilenet_v2', 100, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 10, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 10, 'All'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 20, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 20, 'All'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 100, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 100, 'All'): 'reviewkd',
    ('resnet50_cifar-mobilenet_v2', 10, 'T'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 10, 'All'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 20, 'T'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 20, 'All'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 100, 'T'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 100, 'All'): 'dkd',
}

_DELTA_III = {
    'resnet32x4-resnet8x4': {10: (5.96, 2.20), 20: (4.75, 2.21), 100: (1.39, 1.60)},
    'vgg13-vgg8': {10: (4.51, 1.42), 20: (4.46, 1.78), 100: (2.12, 1.60)},
    'wrn_40_2-wrn_40_1': {10: (3.02, 0.30), 20: (3.70, 0.78), 100: (3.07, 1.65)},
    'resnet110-resnet32': {10: (5.39, 0.64), 20: (6.75, 1.21), 100: (4.32, 1.57)},
}

_UNDERLINED_III = {
    ('resnet32x4-resnet8x4', 10, 'T'): 'dkd',
    ('resnet32x4-resnet8x4', 10, 'All'): 'reviewkd',
    ('resnet32x4-resnet8x4', 20, 'T'): 'dkd',
    ('resnet32x4-resnet8x4', 20, 'All'): 'dkd',
    ('resnet32x4-resnet8x4', 100, 'T'): 'dkd',
    ('resnet32x4-resnet8x4', 100, 'All'): 'dkd',
    ('vgg13-vgg8', 10, 'All'): 'dkd',
    ('vgg13-vgg8', 10, 'T'): 'reviewkd',
    ('vgg13-vgg8', 20, 'All'): 'dkd',
    ('vgg13-vgg8', 20, 'T'): 'reviewkd',
    ('vgg13-vgg8', 100, 'T'): 'reviewkd',
    ('vgg13-vgg8', 100, 'All'): 'reviewkd',
    ('wrn_40_2-wrn_40_1', 10, 'T'): 'reviewkd',
    ('wrn_40_2-wrn_40_1', 10, 'All'): 'reviewkd',
    ('wrn_40_2-wrn_40_1', 20, 'T'): 'reviewkd',
    ('wrn_40_2-wrn_40_1', 20, 'All'): 'reviewkd',
    ('wrn_40_2-wrn_40_1', 100, 'T'): 'reviewkd',
    ('wrn_40_2-wrn_40_1', 100, 'All'): 'reviewkd',
    ('resnet110-resnet32', 10, 'T'): 'reviewkd',
    ('resnet110-resnet32', 10, 'All'): 'reviewkd',
    ('resnet110-resnet32', 20, 'T'): 'reviewkd',
    ('resnet110-resnet32', 20, 'All'): 'reviewkd',
    ('resnet110-resnet32', 100, 'T'): 'reviewkd',
    ('resnet110-resnet32', 100, 'All'): 'reviewkd',
}

_DELTA_IV = {
    'resnet32x4-shufflenet_v1': {10: (5.29, 1.42), 20: (5.97, 1.69), 100: (4.36, 1.86)},
    'vgg13-mobilenet_v2': {10: (5.97, 1.92), 20: (5.51, 2.35), 100: (2.50, 2.33)},
    'wrn_40_2-shufflenet_v1': {10: (3.77, 1.25), 20: (3.51, 1.65), 100: (2.46, 1.78)},
    'resnet50_cifar-mobilenet_v2': {10: (5.52, 1.58), 20: (4.84, 1.36), 100: (3.41, 1.59)},
}

_UNDERLINED_IV = {
    ('resnet32x4-shufflenet_v1', 10, 'T'): 'dkd',
    ('resnet32x4-shufflenet_v1', 10, 'All'): 'dkd',
    ('resnet32x4-shufflenet_v1', 100, 'All'): 'dkd',
    ('resnet32x4-shufflenet_v1', 100, 'T'): 'reviewkd',
    ('resnet32x4-shufflenet_v1', 20, 'T'): 'reviewkd',
    ('resnet32x4-shufflenet_v1', 20, 'All'): 'reviewkd',
    ('vgg13-mobilenet_v2', 10, 'T'): 'dkd',
    ('vgg13-mobilenet_v2', 10, 'All'): 'dkd',
    ('vgg13-mobilenet_v2', 20, 'All'): 'dkd',
    ('vgg13-mobilenet_v2', 20, 'T'): 'reviewkd',
    ('vgg13-mobilenet_v2', 100, 'All'): 'dkd',
    ('vgg13-mobilenet_v2', 100, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 10, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 10, 'All'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 20, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 20, 'All'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 100, 'T'): 'reviewkd',
    ('wrn_40_2-shufflenet_v1', 100, 'All'): 'reviewkd',
    ('resnet50_cifar-mobilenet_v2', 10, 'T'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 10, 'All'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 20, 'T'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 20, 'All'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 100, 'T'): 'dkd',
    ('resnet50_cifar-mobilenet_v2', 100, 'All'): 'dkd',
}

_DELTA_V = {
    'resnet34-resnet18': {5: (1.06, 0.27), 10: (1.75, 0.57), 20: (2.40, 0.65)},
    'resnet50-mobilenet_v1': {5: (1.58, 0.38), 10: (1.34, 0.21), 20: (3.20, 0.38)},
}

_UNDERLINED_V = {
    ('resnet34-resnet18', 5, 'T'): 'reviewkd',
    ('resnet34-resnet18', 5, 'All'): 'reviewkd',
    ('resnet34-resnet18', 10, 'T'): 'reviewkd',
    ('resnet34-resnet18', 10, 'All'): 'reviewkd',
    ('resnet34-resnet18', 20, 'T'): 'reviewkd',
    ('resnet34-resnet18', 20, 'All'): 'reviewkd',
    ('resnet50-mobilenet_v1', 5, 'T'): 'reviewkd',
    ('resnet50-mobilenet_v1', 5, 'All'): 'reviewkd',
    ('resnet50-mobilenet_v1', 10, 'T'): 'reviewkd',
    ('resnet50-mobilenet_v1', 10, 'All'): 'reviewkd',
    ('resnet50-mobilenet_v1', 20, 'T'): 'reviewkd',
    ('resnet50-mobilenet_v1', 20, 'All'): 'reviewkd',
}

_DELTA_VI = _row(2.21, 0.78, 0.67, -0.01, 1.71, 0.40, 0.55, 0.01, 0.59, 0.38, 2.21, 0.60)  # Ours - Biased
MAIN_DELTAS = {"I": _DELTA_I, "II": _DELTA_II, "III": _DELTA_III, "IV": _DELTA_IV, "V": _DELTA_V}
UNDERLINED = {"I": _UNDERLINED_I, "II": _UNDERLINED_II, "III": _UNDERLINED_III, "IV": _UNDERLINED_IV,
              "V": _UNDERLINED_V}
ABLATION_DELTAS = {"VI": _DELTA_VI}
