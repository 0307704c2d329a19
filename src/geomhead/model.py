"""The SSL model: backbone f, projection head h (projector), optional predictor q and EMA target.

Backbone and heads are separate modules so the heads can be evaluated on given representations
z = f(x). The forward pass of two views returns every tensor a loss may need:
``z1, z2`` (backbone), ``h1, h2`` (projector), ``p1, p2`` (predictor), ``t1, t2`` (EMA target
projections, BYOL only).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from geomhead.backbones import build_backbone
from geomhead.heads import build_predictor, build_projector, pseudo_collapse_
from geomhead.losses import USES_PREDICTOR, USES_TARGET

GROUPS = ("backbone", "projector", "predictor")


class SSLModel(nn.Module):
    """Backbone + projector (+ predictor) (+ EMA target of backbone and projector)."""

    def __init__(
        self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module | None = None, ema_momentum: float | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.predictor = predictor
        self.ema_momentum = ema_momentum
        if ema_momentum is not None:
            self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
            self.target_projector = copy.deepcopy(projector).requires_grad_(False)

    def group_parameters(self, group: str) -> Iterator[nn.Parameter]:
        """Trainable parameters of ``backbone``, ``projector`` or ``predictor`` (empty if absent)."""
        module = getattr(self, group)
        return iter(()) if module is None else module.parameters()

    def forward(self, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
        """Both views through the network; keys as in the module docstring."""
        z1, z2 = self.backbone(x1), self.backbone(x2)
        out = {"z1": z1, "z2": z2, "h1": self.projector(z1), "h2": self.projector(z2)}
        if self.predictor is not None:
            out["p1"], out["p2"] = self.predictor(out["h1"]), self.predictor(out["h2"])
        if self.ema_momentum is not None:
            with torch.no_grad():
                out["t1"] = self.target_projector(self.target_backbone(x1))
                out["t2"] = self.target_projector(self.target_backbone(x2))
        return out

    @torch.no_grad()
    def update_target(self) -> None:
        r"""EMA step :math:`\xi \leftarrow m\xi + (1-m)\theta` for the target network (BYOL)."""
        if self.ema_momentum is None:
            return
        m = self.ema_momentum
        for online, target in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
            for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
                p_t.mul_(m).add_(p_o.detach(), alpha=1.0 - m)
            for b_o, b_t in zip(online.buffers(), target.buffers(), strict=True):
                b_t.copy_(b_o)


def build_model(config: Mapping[str, Any], image_shape: tuple[int, int, int]) -> SSLModel:
    """The model of one run from its resolved config (see :func:`geomhead.config.run_config`).

    Weights are drawn from ``torch.manual_seed(seed)`` in a fixed order (backbone, projector,
    predictor), so runs that share a seed and sizes share initial weights whatever their loss;
    the ``collapsed`` init then scales the projector's Linear weights (no random numbers drawn).
    """
    run, model = config["run"], config["model"]
    torch.manual_seed(run["seed"])
    backbone = build_backbone(model["backbone"], image_shape, model["z_dim"], model["backbone_width"])
    projector = build_projector(
        model["z_dim"], model["head_hidden"], model["head_out"], run["depth"], run["activation"], run["batchnorm"], model["head_bias"]
    )
    predictor = None
    if USES_PREDICTOR[run["loss"]]:
        predictor = build_predictor(model["head_out"], model["predictor_hidden"], run["activation"], run["batchnorm"], model["head_bias"])
    if run["init"] == "collapsed":
        pseudo_collapse_(projector, model["collapse_scale"])
    momentum = model["ema_momentum"] if USES_TARGET[run["loss"]] else None
    return SSLModel(backbone, projector, predictor, ema_momentum=momentum)
