"""The PyTorch reference for `ltkd_jax.tools.bench`: mdistiller's CIFAR ResNets and its KD training step, eager fp32.

Only imported when PyTorch is installed (it is not a dependency of the package). The networks follow mdistiller's
`cifar/resnet.py` (post-activation BasicBlocks, 1x1 conv + BN projection shortcuts, global average pooling); the
step is mdistiller's KD: teacher forward under no_grad, student forward and backward, CE + KD(T=4), SGD with
momentum 0.9 and weight decay 5e-4.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# name: (stem width, stage widths, blocks per stage, stem stride)
CIFAR_RESNETS = {
    "resnet8x4": (32, (64, 128, 256), 1, 1),
    "resnet32x4": (32, (64, 128, 256), 5, 1),
    "resnet32": (16, (16, 32, 64), 5, 1),
    "resnet110": (16, (16, 32, 64), 18, 1),
    "demo_resnet_teacher": (24, (24, 48, 96), 2, 2),
    "demo_resnet_student": (8, (8, 16, 32), 1, 2),
}


def supports(name: str) -> bool:
    return name in CIFAR_RESNETS


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet(nn.Module):
    def __init__(self, name: str, num_classes: int, in_channels: int = 3):
        super().__init__()
        stem, widths, blocks, stem_stride = CIFAR_RESNETS[name]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU())
        layers, channels = [], stem
        for i, width in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(channels, width, 2 if (i > 0 and j == 0) else 1))
                channels = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def time_kd_step(teacher: str, student: str, *, batch_size: int, image_size: int, channels: int, num_classes: int,
                 steps: int, windows: int, temperature: float = 4.0) -> float:
    """Median seconds per KD training step on pre-made device tensors (mdistiller's way)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    teacher_net = CifarResNet(teacher, num_classes, channels).to(device).eval()
    student_net = CifarResNet(student, num_classes, channels).to(device).train()
    optimizer = torch.train.SGD(student_net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch_size, channels, image_size, image_size, device=device)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)

    def step():
        with torch.no_grad():
            teacher_logits = teacher_net(images)
        logits = student_net(images)
        kd = F.kl_div(F.log_softmax(logits / temperature, 1), F.softmax(teacher_logits / temperature, 1),
                      reduction="batchmean") * temperature**2
        loss = 0.1 * F.cross_entropy(logits, labels) + 0.9 * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    return float(np.median(times))
