"""PyTorch definitions of every model in convnet's zoo (models/zoo.cpp).

Each model here has exactly convnet's structure and state_dict names and
shapes, so a weights file (models/weights_file.h) moves between the two
unchanged. The ImageNet ResNets and DenseNets are torchvision's own models;
the families torchvision lacks are small definitions written to mirror
convnet's builders (models/resnet.cpp, models/densenet.cpp):

  CIFAR ResNet         He et al. 2015 sec. 4.2: 3x3 stem conv1/bn1, basic
                       blocks, option A shortcuts (subsample, zero-pad channels
                       half before and half after), fc.
  pre-activation       He et al. 2016: BN-ReLU-conv units bn1/conv1/bn2/conv2
                       [bn3/conv3], identity addition, projection shortcut
                       downsample.0 (a conv without BN) reading the
                       pre-activated input; final_bn before pooling. CIFAR
                       stem is conv1 only; ImageNet stem is torchvision's.
  SE-ResNet            Hu et al. 2018: the post-activation block with
                       squeeze-and-excitation after its last BN, before the
                       addition; se.fc1 / se.fc2 are 1x1 convs with bias,
                       hidden channels C // 16 (timm's naming).
  (SE-)BN-Inception    the SENet authors' Caffe prototxt (see BNInception).
  CIFAR DenseNet(-BC)  Huang et al. 2017: 3x3 stem features.conv0 (no BN),
                       torchvision's block/transition names, final
                       features.norm{blocks + 1}, classifier.

build(name, num_classes, in_channels) returns a model with PyTorch's default
initialization (torchvision's, where torchvision defines the model). Run as a
script, `reference_models.py --keys OUT.txt` lists every model's state_dict.
"""

import argparse
import collections
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

IMAGENET_RESNET_BLOCKS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
    200: [3, 24, 36, 3],
}
IMAGENET_WIDTHS = [64, 128, 256, 512]
CIFAR_WIDTHS = [16, 32, 64]


def conv(in_channels, out_channels, kernel, stride=1, bias=False):
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                     bias=bias)


class SqueezeExcitation(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean_hw(x)))))."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = channels // reduction
        if hidden <= 0:
            raise ValueError(f"{channels} channels with SE reduction {reduction}")
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


def pad_shortcut(x, out_channels, stride):
    """Option A: x[:, :, ::stride, ::stride] with (out - in) / 2 zero channels on each side."""
    x = x[:, :, ::stride, ::stride]
    pad = (out_channels - x.shape[1]) // 2
    return F.pad(x, (0, 0, 0, 0, pad, out_channels - x.shape[1] - pad))


# ---- post-activation blocks (CIFAR ResNet, SE-ResNet) ------------------------


class BasicBlock(nn.Module):
    """3x3-3x3 post-activation block; option A shortcut when the shape changes."""

    expansion = 1

    def __init__(self, in_channels, planes, stride, se=False, pad_shortcut=True):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = conv(in_channels, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, out, 3)
        self.bn2 = nn.BatchNorm2d(out)
        self.se = SqueezeExcitation(out) if se else None
        self.out_channels, self.stride = out, stride
        self.project = stride != 1 or in_channels != out
        if self.project and not pad_shortcut:
            self.downsample = nn.Sequential(conv(in_channels, out, 1, stride), nn.BatchNorm2d(out))
        else:
            self.downsample = None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.se is not None:
            y = self.se(y)
        if self.downsample is not None:
            shortcut = self.downsample(x)
        elif self.project:
            shortcut = pad_shortcut(x, self.out_channels, self.stride)
        else:
            shortcut = x
        return F.relu(y + shortcut)


class SEBottleneck(nn.Module):
    """torchvision's v1.5 Bottleneck (stride in the 3x3, grouped for ResNeXt) with SE after bn3.

    Constructed by torchvision.models.ResNet, which passes the projection
    shortcut in as `downsample`; it is registered last, as in convnet.
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        out = planes * self.expansion
        width = int(planes * (base_width / 64.0)) * groups  # ResNeXt: grouped 3x3
        self.conv1 = conv(inplanes, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv(width, out, 1)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SqueezeExcitation(out)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.se(self.bn3(self.conv3(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class CifarResNet(nn.Module):
    """6n+2 layers: conv1/bn1 (16 channels), three stages of n blocks, fc."""

    def __init__(self, depth, num_classes, in_channels, se=False):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = conv(in_channels, 16, 3)
        self.bn1 = nn.BatchNorm2d(16)
        channels = 16
        for s, planes in enumerate(CIFAR_WIDTHS):
            blocks = []
            for i in range(n):
                stride = 2 if (i == 0 and s > 0) else 1
                blocks.append(BasicBlock(channels, planes, stride, se=se))
                channels = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


# ---- pre-activation ResNet ---------------------------------------------------


class PreActBlock(nn.Module):
    """BN-ReLU-conv units; basic (3x3-3x3) or bottleneck (1x1-3x3-1x1, stride in the 3x3)."""

    def __init__(self, in_channels, planes, stride, bottleneck, se=False):
        super().__init__()
        self.bottleneck = bottleneck
        out = planes * (4 if bottleneck else 1)
        self.bn1 = nn.BatchNorm2d(in_channels)
        if bottleneck:
            self.conv1 = conv(in_channels, planes, 1)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = conv(planes, planes, 3, stride)
            self.bn3 = nn.BatchNorm2d(planes)
            self.conv3 = conv(planes, out, 1)
        else:
            self.conv1 = conv(in_channels, planes, 3, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = conv(planes, out, 3)
        self.se = SqueezeExcitation(out) if se else None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(conv(in_channels, out, 1, stride))
        else:
            self.downsample = None

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        y = self.conv1(pre)
        y = self.conv2(F.relu(self.bn2(y)))
        if self.bottleneck:
            y = self.conv3(F.relu(self.bn3(y)))
        if self.se is not None:
            y = self.se(y)
        shortcut = x if self.downsample is None else self.downsample(pre)
        return y + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet; ImageNet stem (conv1/bn1/max pool) or CIFAR stem (conv1 only)."""

    def __init__(self, blocks, widths, bottleneck, imagenet_stem, num_classes, in_channels,
                 se=False):
        super().__init__()
        self.imagenet_stem = imagenet_stem
        stem = 64 if imagenet_stem else 16
        if imagenet_stem:
            self.conv1 = conv(in_channels, stem, 7, 2)
            self.bn1 = nn.BatchNorm2d(stem)
        else:
            self.conv1 = conv(in_channels, stem, 3)
        channels = stem
        for s, (count, planes) in enumerate(zip(blocks, widths)):
            layer = []
            for i in range(count):
                stride = 2 if (i == 0 and s > 0) else 1
                layer.append(PreActBlock(channels, planes, stride, bottleneck, se=se))
                channels = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self.final_bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if self.imagenet_stem:
            x = F.max_pool2d(F.relu(self.bn1(x)), 3, stride=2, padding=1)
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        x = F.relu(self.final_bn(x))
        return self.fc(x.mean(dim=(2, 3)))


# ---- CIFAR DenseNet ----------------------------------------------------------


class DenseLayer(nn.Module):
    """norm1-relu-conv1 [-norm2-relu-conv2]; conv1 is the 1x1 bottleneck when bn_size > 0."""

    def __init__(self, in_channels, growth, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        if bn_size > 0:
            width = bn_size * growth
            self.conv1 = conv(in_channels, width, 1)
            self.norm2 = nn.BatchNorm2d(width)
            self.conv2 = conv(width, growth, 3)
        else:
            self.conv1 = conv(in_channels, growth, 3)
            self.conv2 = None

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        if self.conv2 is not None:
            y = self.conv2(F.relu(self.norm2(y)))
        return y


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers, in_channels, growth, bn_size):
        super().__init__()
        for j in range(layers):
            self[f"denselayer{j + 1}"] = DenseLayer(in_channels + j * growth, growth, bn_size)

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__(
            collections.OrderedDict([
                ("norm", nn.BatchNorm2d(in_channels)),
                ("relu", nn.ReLU()),
                ("conv", conv(in_channels, out_channels, 1)),
                ("pool", nn.AvgPool2d(2, stride=2)),
            ]))


class CifarDenseNet(nn.Module):
    """3x3 stem conv0, dense blocks with transitions (compression), final norm, classifier."""

    def __init__(self, blocks, growth, init_features, bn_size, compression, num_classes,
                 in_channels):
        super().__init__()
        features = collections.OrderedDict(conv0=conv(in_channels, init_features, 3))
        channels = init_features
        for i, layers in enumerate(blocks):
            features[f"denseblock{i + 1}"] = DenseBlock(layers, channels, growth, bn_size)
            channels += layers * growth
            if i + 1 < len(blocks):
                out = int(compression * channels)
                features[f"transition{i + 1}"] = Transition(channels, out)
                channels = out
        features[f"norm{len(blocks) + 1}"] = nn.BatchNorm2d(channels)
        self.features = nn.Sequential(features)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.features(x))
        return self.classifier(x.mean(dim=(2, 3)))


# ---- BN-Inception and SE-BN-Inception -----------------------------------------
# Written from the SENet authors' Caffe definition, models/SE-BN-Inception.prototxt
# (github.com/hujie-frank/SENet): every convolution bias-free, followed by
# BatchNorm (Caffe's BatchNorm + Scale) and ReLU; Caffe's pooling rounds up
# (ceil_mode=True) and its average pooling counts the padding; the SE block
# after every module's concatenation is x * sigmoid(up(relu(down(mean(x))))),
# with biased 1x1 convolutions of C // 16 channels and no residual. Names are
# the prototxt's layer names with "/" as "_". The prototxt's fixed 7x7 pool5 is
# global average pooling (the same at 224x224).

# name, 1x1, 3x3_reduce, 3x3, double3x3_reduce, double3x3, pool_proj (0: a
# reduction module: no 1x1, stride 2, max pool passed through), pool type
INCEPTION_MODULES = [
    ("inception_3a", 64, 64, 64, 64, 96, 32, "avg"),
    ("inception_3b", 64, 64, 96, 64, 96, 64, "avg"),
    ("inception_3c", 0, 128, 160, 64, 96, 0, "max"),
    ("inception_4a", 224, 64, 96, 96, 128, 128, "avg"),
    ("inception_4b", 192, 96, 128, 96, 128, 128, "avg"),
    ("inception_4c", 160, 128, 160, 128, 160, 128, "avg"),
    ("inception_4d", 96, 128, 192, 160, 192, 128, "avg"),
    ("inception_4e", 0, 128, 192, 192, 256, 0, "max"),
    ("inception_5a", 352, 192, 320, 160, 224, 128, "avg"),
    ("inception_5b", 352, 192, 320, 192, 224, 128, "max"),
]


class BNInception(nn.Module):
    def __init__(self, num_classes, in_channels, se=False):
        super().__init__()
        self.se = se
        self.relu_inputs = []  # modules whose output goes straight into a ReLU
        self._unit("conv1_7x7_s2", in_channels, 64, 7, 2)
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3)
        channels = 192
        for name, b1, r3, o3, rd, od, proj, _ in INCEPTION_MODULES:
            s = 2 if proj == 0 else 1
            if b1:
                self._unit(f"{name}_1x1", channels, b1, 1)
            self._unit(f"{name}_3x3_reduce", channels, r3, 1)
            self._unit(f"{name}_3x3", r3, o3, 3, s)
            self._unit(f"{name}_double3x3_reduce", channels, rd, 1)
            self._unit(f"{name}_double3x3a", rd, od, 3)
            self._unit(f"{name}_double3x3b", od, od, 3, s)
            if proj:
                self._unit(f"{name}_pool_proj", channels, proj, 1)
            channels = b1 + o3 + od + (proj or channels)
            if se:
                down = nn.Conv2d(channels, channels // 16, 1)
                setattr(self, f"{name}_1x1_down", down)
                setattr(self, f"{name}_1x1_up", nn.Conv2d(channels // 16, channels, 1))
                self.relu_inputs.append(down)
        self.classifier = nn.Linear(channels, num_classes)

    def _unit(self, name, in_channels, out_channels, kernel, stride=1):
        setattr(self, name, conv(in_channels, out_channels, kernel, stride))
        bn = nn.BatchNorm2d(out_channels)
        setattr(self, name + "_bn", bn)
        self.relu_inputs.append(bn)

    def _run(self, name, x):
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def forward(self, x):
        x = F.max_pool2d(self._run("conv1_7x7_s2", x), 3, 2, ceil_mode=True)
        x = self._run("conv2_3x3", self._run("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for name, b1, _, _, _, _, proj, pool in INCEPTION_MODULES:
            branches = [self._run(f"{name}_1x1", x)] if b1 else []
            branches.append(self._run(f"{name}_3x3", self._run(f"{name}_3x3_reduce", x)))
            y = self._run(f"{name}_double3x3_reduce", x)
            branches.append(self._run(f"{name}_double3x3b", self._run(f"{name}_double3x3a", y)))
            if not proj:
                branches.append(F.max_pool2d(x, 3, 2, ceil_mode=True))
            elif pool == "max":
                branches.append(self._run(f"{name}_pool_proj", F.max_pool2d(x, 3, 1, 1)))
            else:
                branches.append(self._run(f"{name}_pool_proj", F.avg_pool2d(x, 3, 1, 1)))
            x = torch.cat(branches, 1)
            if self.se:
                s = F.relu(getattr(self, f"{name}_1x1_down")(x.mean(dim=(2, 3), keepdim=True)))
                x = x * torch.sigmoid(getattr(self, f"{name}_1x1_up")(s))
        return self.classifier(x.mean(dim=(2, 3)))


# ---- the zoo -----------------------------------------------------------------


def _torchvision_resnet(depth, num_classes, in_channels, block=None, name=None, **grouping):
    if block is None:
        model = getattr(torchvision.models, name or f"resnet{depth}")(num_classes=num_classes)
    else:
        model = torchvision.models.ResNet(block, IMAGENET_RESNET_BLOCKS[depth],
                                          num_classes=num_classes, **grouping)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def _torchvision_densenet(growth, blocks, init_features, num_classes, in_channels):
    model = torchvision.models.DenseNet(growth, tuple(blocks), init_features,
                                        num_classes=num_classes)
    if in_channels != 3:
        model.features.conv0 = nn.Conv2d(in_channels, init_features, 7, stride=2, padding=3,
                                         bias=False)
        nn.init.kaiming_normal_(model.features.conv0.weight)
    return model


def _zoo():
    """name -> (default classes, default image size, constructor(num_classes, in_channels))."""
    zoo = {}

    def imagenet(name, make):
        zoo[name] = (1000, 224, make)

    def cifar(name, make):
        zoo[name] = (10, 32, make)

    for d in (18, 34, 50, 101, 152):
        imagenet(f"resnet{d}", lambda k, c, d=d: _torchvision_resnet(d, k, c))
    for d in (20, 32, 44, 56, 110, 1202):
        cifar(f"resnet{d}", lambda k, c, d=d: CifarResNet(d, k, c))
    for d in (18, 34, 50, 101, 152, 200):
        imagenet(f"preact_resnet{d}",
                 lambda k, c, d=d: PreActResNet(IMAGENET_RESNET_BLOCKS[d], IMAGENET_WIDTHS, d >= 50,
                                                True, k, c))
    for d, bottleneck in ((110, False), (164, True), (1001, True)):
        n = (d - 2) // (9 if bottleneck else 6)
        cifar(f"preact_resnet{d}",
              lambda k, c, n=n, b=bottleneck: PreActResNet([n] * 3, CIFAR_WIDTHS, b, False, k, c))
    for d in (50, 101, 152):
        imagenet(f"se_resnet{d}", lambda k, c, d=d: _torchvision_resnet(d, k, c, SEBottleneck))
    for d in (20, 32, 44, 56, 110):
        cifar(f"se_resnet{d}", lambda k, c, d=d: CifarResNet(d, k, c, se=True))
    for name in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
                 "wide_resnet101_2"):
        depth = 50 if "50" in name else 101
        imagenet(name, lambda k, c, d=depth, n=name: _torchvision_resnet(d, k, c, name=n))
    for d in (50, 101):
        imagenet(f"se_resnext{d}_32x4d",
                 lambda k, c, d=d: _torchvision_resnet(d, k, c, SEBottleneck, groups=32,
                                                       width_per_group=4))
    # Zagoruyko and Komodakis 2016: WRN-d-k, (d - 4) / 6 pre-activation basic blocks per stage.
    for d, k in ((28, 10), (40, 4)):
        cifar(f"wrn_{d}_{k}",
              lambda kk, c, d=d, k=k: PreActResNet([(d - 4) // 6] * 3, [16 * k, 32 * k, 64 * k],
                                                   False, False, kk, c))
    imagenet("bn_inception", lambda k, c: BNInception(k, c))
    imagenet("se_bn_inception", lambda k, c: BNInception(k, c, se=True))
    cifar("se_preact_resnet164",
          lambda k, c: PreActResNet([18] * 3, CIFAR_WIDTHS, True, False, k, c, se=True))
    for d, growth, init, blocks in ((121, 32, 64, [6, 12, 24, 16]), (161, 48, 96, [6, 12, 36, 24]),
                                    (169, 32, 64, [6, 12, 32, 32]), (201, 32, 64, [6, 12, 48, 32]),
                                    (264, 32, 64, [6, 12, 64, 48])):
        imagenet(f"densenet{d}",
                 lambda k, c, g=growth, b=blocks, i=init: _torchvision_densenet(g, b, i, k, c))
    for d, growth in ((100, 12), (250, 24), (190, 40)):
        n = (d - 4) // 6
        cifar(f"densenet_bc_{d}_k{growth}",
              lambda k, c, n=n, g=growth: CifarDenseNet([n] * 3, g, 2 * g, 4, 0.5, k, c))
    cifar("densenet40_k12", lambda k, c: CifarDenseNet([12] * 3, 12, 16, 0, 1.0, k, c))
    return zoo


ZOO = _zoo()


def model_names():
    return list(ZOO)


def default_classes(name):
    return _lookup(name)[0]


def default_image_size(name):
    return _lookup(name)[1]


def build(name, num_classes=0, in_channels=3):
    """The model `name` for `num_classes` (0: its default) and `in_channels` input channels."""
    classes, _, make = _lookup(name)
    return make(num_classes if num_classes > 0 else classes, in_channels)


def _lookup(name):
    if name not in ZOO:
        raise ValueError(f"unknown model '{name}'; valid models: {', '.join(ZOO)}")
    return ZOO[name]


def main(argv):
    """reference_models.py --keys OUT.txt [--num-classes K]: every model's state_dict, one
    "model key extent..." line per entry, in state_dict order (parity_test.cpp compares it with
    convnet's ParamStore)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--keys", required=True, help="output text file")
    parser.add_argument("--num-classes", type=int, default=10)
    args = parser.parse_args(argv)
    # Initialization is irrelevant to names and shapes and costs most of the time.
    for name in ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_"):
        setattr(nn.init, name, lambda tensor, *a, **k: tensor)
    lines = []
    for model in ZOO:
        for key, value in build(model, args.num_classes).state_dict().items():
            lines.append(" ".join([model, key] + [str(d) for d in value.shape]))
    with open(args.keys + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(args.keys + ".tmp", args.keys)


if __name__ == "__main__":
    main(sys.argv[1:])
