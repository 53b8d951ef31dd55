"""VGG19 features for the perceptual loss, without torchvision.

The network is the standard VGG19 ``features`` stack up to block5_conv1, laid out so that the standard
torchvision state dict (``features.N.weight`` / ``features.N.bias``) loads into it as is. The original used
Keras' block1..5_conv1 outputs, which are taken after the ReLU; so are ours.

Where the weights come from, in order: an explicit local file (``vgg_weights``; a missing file is an error,
since the user asked for it), the standard download cached under ``$TORCH_HOME/hub/checkpoints``, and the
download itself when allowed. When none is available, ``load_vgg19`` returns None and the trainer falls
back to discriminator feature matching (as SPADE does), saying so once.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# Seconds to wait for a connection or for the next bytes of the download. torch.hub waits forever; on a
# machine without a network (or behind a silent proxy) training must fall back at once instead.
DOWNLOAD_TIMEOUT_S = 20.0
# Channels per conv and "M" for max-pool, torchvision's configuration "E", cut after block5_conv1.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Indices in ``features`` of the ReLU after block1..5_conv1.
FEATURE_LAYERS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(ValueError):
    """A VGG19 weight file is missing, unreadable or of the wrong layout."""


class VGG19Features(nn.Module):
    """``forward(rgb01 [N, 3, H, W] in 0..1) -> [block1_conv1, ..., block5_conv1]`` (post-ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        if rgb01.dim() != 4 or rgb01.shape[1] != 3:
            raise ValueError(f"VGG19 input must be [N, 3, H, W], got {tuple(rgb01.shape)}")
        x = (rgb01 - self.mean.to(rgb01.dtype)) / self.std.to(rgb01.dtype)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in FEATURE_LAYERS:
                out.append(x)
        return out

    def train(self, mode: bool = True) -> VGG19Features:
        # Frozen feature extractor: stays in eval whatever the trainer does with its parent modules.
        return super().train(False)


def load_state(net: VGG19Features, state: dict[str, torch.Tensor], source: str) -> VGG19Features:
    """Copy the ``features.*`` tensors of a torchvision-layout VGG19 state dict into ``net``."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise VGGWeightsError(
            f"{source} is not a torchvision-layout VGG19 state dict: missing {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''} (expected keys like 'features.0.weight')"
        )
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise VGGWeightsError(
            f"{source}: {k} has shape {tuple(state[k].shape)}, VGG19 needs {tuple(own[k].shape)}"
        )
    net.load_state_dict({k: state[k].float() for k in own}, strict=True)
    return net


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise VGGWeightsError(f"cannot read VGG19 weights {path}: {e}") from None
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def cached_weights_path() -> Path:
    """Where torch.hub keeps the standard download: $TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(VGG19_URL)


def load_vgg19(
    path: str | Path | None = None, *, allow_download: bool = True, progress: bool = False
) -> tuple[VGG19Features | None, str]:
    """(network, where it came from) or (None, why not). An explicit ``path`` that fails raises."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise VGGWeightsError(
                f"VGG19 weights file {p} does not exist; set vgg_weights to a torchvision-layout VGG19 "
                "state dict (vgg19-dcbb9e9d.pth) or leave it empty to use the cached standard download"
            )
        return load_state(VGG19Features(), _read_state(p), str(p)), str(p)
    cached = cached_weights_path()
    if cached.is_file():
        return load_state(VGG19Features(), _read_state(cached), str(cached)), str(cached)
    if not allow_download:
        return None, f"no VGG19 weights at {cached} and downloading is off (vgg_download = false)"
    if progress:
        print(f"downloading VGG19 weights from {VGG19_URL} to {cached} (548 MB)", flush=True)
    try:
        download(VGG19_URL, cached, DOWNLOAD_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - offline, proxy, timeout, disk full: all mean "not available"
        return None, f"could not download VGG19 weights from {VGG19_URL}: {e}"
    return load_state(VGG19Features(), _read_state(cached), VGG19_URL), VGG19_URL


def download(url: str, dest: Path, timeout: float) -> Path:
    """``url`` -> ``dest`` through a temporary file beside it, renamed once complete and checked.

    ``timeout`` bounds the connection and every wait for more bytes. As torch.hub does, the file's
    sha256 must start with the hex digits after the last '-' of its name (vgg19-dcbb9e9d.pth).
    """
    import hashlib
    import tempfile
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    want = dest.stem.rsplit("-", 1)[-1]
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
        if not digest.hexdigest().startswith(want):
            raise VGGWeightsError(f"the file from {url} is corrupt (sha256 does not start with {want})")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest


def perceptual_l1(vgg: VGG19Features, fake_rgb: torch.Tensor, real_rgb: torch.Tensor) -> torch.Tensor:
    """Sum over block1..5_conv1 of mean |f(fake) - f(real)|; inputs [N, 3 or 1, H, W] in -1..1.

    One-channel inputs (height) are replicated to three, as the original did.
    """
    return perceptual_l1_pair(vgg, (fake_rgb, real_rgb))[0]


def perceptual_l1_pair(vgg: VGG19Features, *pairs: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    """:func:`perceptual_l1` of each (fake, real) pair, all through one VGG forward (one batch).

    Inputs as for :func:`perceptual_l1`, every one of the same N, H, W.
    """
    fakes = [f.expand(-1, 3, -1, -1) if f.shape[1] == 1 else f for f, _ in pairs]
    reals = [r.detach().expand(-1, 3, -1, -1) if r.shape[1] == 1 else r.detach() for _, r in pairs]
    n, k = fakes[0].shape[0], len(pairs)
    feats = vgg(torch.cat(fakes + reals, 0) * 0.5 + 0.5)  # [2kN, 3, H, W]: the fakes, then the reals
    losses = [fakes[0].new_zeros(()) for _ in pairs]
    for f in feats:
        for i in range(k):
            real_f = f[(k + i) * n : (k + i + 1) * n].detach()  # real features need no graph
            losses[i] = losses[i] + F.l1_loss(f[i * n : (i + 1) * n], real_f)
    return losses
